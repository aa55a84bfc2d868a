"""A stocksync worker (run one with `stocksync worker`), in rooms, each importing only the rooms below it:

- `runtime`: the only code that imports faust and mode: the faust app, its table recovery and standby hooks, the
  process, and the wiring of every collaborator (bootstrap). Everything else runs without faust.
- `api`: the HTTP pages: readiness, metrics, OpenAPI and the query API, as named handlers.
- `flow`: the flow of a batch: the input reader, the batch unit of work, the Kafka transactions.
- `processing`: what a batch decides: decode, apply the domain, emit (state records, ledger, positions, ATS).
- `reference`: reference data every worker follows: the network, the catalog, transfer suggestions.
- `state`: the stock table: the key layout, the local stores (memory and RocksDB) behind one protocol, the
  table a transaction reads and writes, and the changelog reader that restores and follows partitions.
- `ops`: health, metrics, logs and the clock, used by every room above."""
