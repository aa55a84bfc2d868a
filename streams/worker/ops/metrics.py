"""Prometheus metrics of a worker, served at /metrics by the worker's web server; `deploy/grafana/` has a
dashboard on them. What a batch did is counted when its transaction commits (an aborted batch is retried and
would count twice); gauges are sampled by the worker's metrics timer."""

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# A `*_created` series per counter and histogram doubles the series count and tells an operator nothing.
disable_created_metrics()  # type: ignore[no-untyped-call]

MESSAGES = Counter("stocksync_messages_total", "Inbound messages handled")
MOVEMENTS = Counter("stocksync_movements_total", "Movements applied, by kind, channel and outcome (status: applied, "
                    "duplicate, refused, ...)", ["kind", "channel", "status"])
DEAD_LETTERS = Counter("stocksync_dead_letters_total", "Inputs sent to the dead-letter topic", ["reason", "channel"])
REROUTED = Counter("stocksync_rerouted_total", "Movements re-sent to the partition of their SKU")
RESTORED_RECORDS = Counter("stocksync_restored_records_total", "Changelog records read into the local store when this "
                           "worker took table partitions over")
STANDBY_RECORDS = Counter("stocksync_standby_records_total", "Changelog records written into the local store's "
                          "standby replicas of table partitions other workers own")
ANOMALIES = Counter("stocksync_anomalies_total", "Flagged outcomes (negative_on_hand: on-hand went below zero, "
                    "unknown_reservation, ...)", ["anomaly"])
RETURNED_UNITS = Counter("stocksync_returned_units_total", "Units returned, by channel, how they came back (post, "
                        "store, pickup_point, unknown) and where they went (sellable, quality_control, damaged)",
                        ["channel", "via", "state"])
WRITTEN_OFF_UNITS = Counter("stocksync_written_off_units_total", "Units written off, by the state they left and the "
                            "reason", ["state", "reason"])
BATCH_SIZE = Histogram("stocksync_batch_messages", "Messages per processed batch",
                       buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
INGEST_LATENCY = Histogram("stocksync_ingest_to_publish_seconds",
                           "From the inbound message's timestamp to its outputs being committed",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
OUTPUTS = Counter("stocksync_outputs_total", "Records committed to output topics (state changelog included)",
                  ["topic"])
NETWORK_VERSION = Gauge("stocksync_network_version", "Offset of the network config in force")
INPUT_LAG = Gauge("stocksync_input_lag_messages", "Input messages not yet applied, per table partition this worker "
                  "owns (all input topics)", ["partition"])
INPUT_OFFSETS_LOST = Counter("stocksync_input_offsets_lost_total",
                             "Input offsets deleted by the topic's retention before this worker read them")
TRANSACTIONS = Counter("stocksync_transactions_total", "Batch transactions by how they ended (committed, aborted, "
                       "fenced)", ["result"])
COMMIT_SECONDS = Histogram("stocksync_transaction_seconds", "Writing and committing one partition's transaction",
                           buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
STATE_RECORDS = Histogram("stocksync_state_records_per_sku", "Stock table records a SKU's batch writes (its head, "
                          "history records written or deleted)", buckets=(1, 2, 4, 8, 16, 64, 256, 1024, 4096))
TABLE_KEYS = Gauge("stocksync_table_keys", "Stock table records held locally, per partition and role (active: "
                   "this worker owns it; standby: a warm copy) (RocksDB: its estimate)", ["partition", "role"])
TABLE_BYTES = Gauge("stocksync_table_bytes", "Stock table bytes held locally, per partition and role (RocksDB: live "
                    "data and memtables, estimated)", ["partition", "role"])
TABLE_MEMORY = Gauge("stocksync_table_memory_bytes", "Memory the local stock table holds outside Python (RocksDB: "
                     "memtables, block cache, SST indexes and filters), over every open partition", ["kind"])
RECOVERY_REMAINING = Gauge("stocksync_recovery_remaining_records", "Changelog records still to read before the "
                           "worker's table partitions are recovered (active) or up to date (standby)", ["kind"])
READY = Gauge("stocksync_ready", "1 when the worker is ready (assigned, recovered, reading, Kafka answering)")
ORDERS = Counter("stocksync_orders_decided_total", "Orders decided by their coordinator, by channel and result "
                 "(accepted, or the refusal's reason)", ["channel", "result"])
ORDER_PARCELS = Histogram("stocksync_order_parcels", "Parcels per accepted order", buckets=(1, 2, 3, 4, 5, 10))
ORDER_SECONDS = Histogram("stocksync_order_decision_seconds", "From an order's first request to its decision "
                          "(worker time)", buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30))
