"""Kafka transactions, one producer per table partition: a batch's state, outputs and input offsets become
visible together or not at all, and only the partition's current owner can write.

This is Kafka Streams' first exactly-once design (a producer per task): each table partition has its own
transactional id, `<app id>-stock-<partition>`. The worker that takes a partition over initialises a producer with
that id before it recovers the partition's state; the broker then aborts whatever the previous owner had left
open and fences it, so a worker that was paused and wakes up cannot commit a stale batch (its commit fails).
Kafka Streams' later design (one producer per thread, fenced through the consumer group's generation, KIP-447)
needs the group's metadata from the consumer that reads the inputs; ours are read by an aiokafka consumer in
assign mode, so the partition ids do the fencing here.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from streams.errors import StocksyncError
from streams.kafka.clients import KafkaError, KafkaException, Producer, new_transactional_producer, produce
from streams.security import Kafka
from streams.worker.ops import metrics
from streams.worker.processing.outputs import OutputRecord

log = logging.getLogger("stocksync.worker")

COMMIT_TIMEOUT_S = 30.0
ABORT_TIMEOUT_S = 5.0

# A record refused with one of these will be refused again however often it is sent: its batch has to be split
# until the record's source message is found and dead-lettered.
PERMANENT_RECORD_ERRORS = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_MSG_SIZE,
    KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG, KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.POLICY_VIOLATION, KafkaError.TOPIC_EXCEPTION, KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION,  # noqa: SLF001 - librdkafka's local errors
    KafkaError._INVALID_ARG,  # noqa: SLF001
})


class Fenced(StocksyncError):
    """This worker may no longer write the partition: another worker took it over (or its producer broke for
    good). Nothing of the transaction was committed; the partition is written again once it is assigned again."""

    def __init__(self, partition: int, why: str) -> None:
        super().__init__(f"table partition {partition}: {why}")
        self.partition = partition


class CommitFailed(StocksyncError):
    """The transaction was not committed, and nothing of it is visible. `permanent`: a record in it can never be
    written (its part of the batch must be isolated; the abort went through and the producer is kept); otherwise
    the partition's producer is dropped and the partition written again only once it is assigned again."""

    def __init__(self, partition: int, errors: Sequence[str], permanent: bool) -> None:
        super().__init__(f"table partition {partition}: {len(errors)} records refused, e.g. {errors[0]}"
                         if errors else f"table partition {partition}: the transaction was aborted")
        self.partition, self.errors, self.permanent = partition, list(errors), permanent


class PartitionTransactions:
    """The transactional producers of the table partitions this worker owns."""

    def __init__(self, servers: Kafka, app_id: str, crash_before_commit: int = 0,
                 on_fenced: Callable[[], None] = lambda: None,
                 crash_when: Callable[[Sequence[OutputRecord]], bool] | None = None) -> None:
        self.servers, self.app_id = servers, app_id
        self.producers: dict[int, Producer] = {}
        # A fenced partition (or a producer that failed for good) is written again only after a rebalance, which
        # fences afresh and recovers the partition: this asks the group for one. Waiting for one that nobody
        # asked for stalled the partition for good when the failure was not another worker's doing (a broker
        # fault can leave a producer in an invalid transaction state).
        self.on_fenced = on_fenced
        # Fault injection for tests (0: off): the process exits after writing this many batch transactions'
        # records, before committing the last one.
        self.crash_before_commit = crash_before_commit
        self.written = 0
        # Fault injection for tests (None: off): the process exits before committing a batch transaction whose
        # records this says yes to.
        self.crash_when = crash_when

    def transactional_id(self, partition: int) -> str:
        return f"{self.app_id}-stock-{partition}"

    def writable(self) -> set[int]:
        return set(self.producers)

    async def fence(self, partitions: Iterable[int]) -> None:
        """Become the only writer of `partitions` (and stop writing any other): a new producer per partition,
        whose initialisation aborts what an earlier owner left open and fences it. Call before reading the
        partitions' state, so that no transaction of theirs can commit after it was read."""
        wanted = set(partitions)
        self.producers.clear()  # kept ones too: another worker may have owned them in between
        loop = asyncio.get_running_loop()
        made = await asyncio.gather(*(loop.run_in_executor(None, self._initialised, p) for p in sorted(wanted)))
        self.producers = dict(zip(sorted(wanted), made, strict=True))
        if wanted:
            log.info("fenced earlier writers of table partitions %s", sorted(wanted))

    def _initialised(self, partition: int) -> Producer:
        producer = new_transactional_producer(self.servers, self.transactional_id(partition), **{
            "linger.ms": 0, "queue.buffering.max.messages": 1_000_000})
        while True:
            try:
                producer.init_transactions(COMMIT_TIMEOUT_S)
                return producer
            except KafkaException as exc:
                if not exc.args[0].retriable():
                    raise
                log.warning("table partition %d: initialising its transactions: %s; trying again", partition,
                            exc.args[0])

    async def commit(self, partition: int, records: Sequence[OutputRecord], with_state: bool = False
                     ) -> dict[str, int]:
        """Write `records` in one transaction of `partition`'s producer and commit it; returns, per topic, the
        offset of its last record written. Raises Fenced or CommitFailed, after which nothing of it is visible
        to read_committed readers. `with_state`: a batch's transaction (state records among them), where the
        fault injection point is."""
        producer = self.producers.get(partition)
        if producer is None:
            raise Fenced(partition, "this worker does not own it")
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            last = await loop.run_in_executor(None, self._transaction, partition, producer, records, with_state)
        except Fenced as exc:
            self.producers.pop(partition, None)
            metrics.TRANSACTIONS.labels("fenced").inc()
            log.warning("%s: fenced (another worker has taken the partition over, or the producer failed for good); "
                        "nothing of this transaction is committed; asking the workers to rebalance", exc)
            self.on_fenced()
            raise
        except CommitFailed as exc:
            metrics.TRANSACTIONS.labels("aborted").inc()
            if not exc.permanent:
                # Whether the broker committed or aborted is not known here (a commit's answer can be lost, an
                # abort can time out), nor whether this worker still owns the partition: links cut past the group
                # session leave it believing so while another worker has taken over. A new producer would fence
                # that worker, and the batch written again from this worker's state would apply twice what the
                # other had committed. The partition is written again only once the group assigns it again: then
                # fenced afresh and restored from its changelog, the committed truth.
                self.producers.pop(partition, None)
                log.warning("%s; its producer is dropped and the workers asked to rebalance: the partition is "
                            "written again once assigned, from its changelog", exc)
                self.on_fenced()
            raise
        metrics.TRANSACTIONS.labels("committed").inc()
        for topic, count in Counter(record[0] for record in records).items():
            metrics.OUTPUTS.labels(topic).inc(count)
        metrics.COMMIT_SECONDS.observe(loop.time() - started)
        return last

    def _transaction(self, partition: int, producer: Producer, records: Sequence[OutputRecord],
                     with_state: bool) -> dict[str, int]:
        refused: list[tuple[str, KafkaError]] = []
        last: dict[str, int] = {}

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                refused.append((str(msg.topic()), err))
            else:
                topic = str(msg.topic())
                last[topic] = max(last.get(topic, -1), int(msg.offset()))

        failure: KafkaError | None = None
        try:
            producer.begin_transaction()
            for topic, key, value, part in records:
                try:
                    produce(producer, topic, value, key, part, delivered)
                except KafkaException as exc:  # refused before it was sent (e.g. over message.max.bytes)
                    refused.append((topic, exc.args[0]))
            producer.flush(COMMIT_TIMEOUT_S)
            if with_state:
                self._maybe_crash(records)
            if not refused:
                self._commit(producer)
                return last
        except KafkaException as exc:
            failure = exc.args[0]
            if failure.fatal():  # fenced by a newer owner, or the producer is broken for good
                raise Fenced(partition, failure.str()) from None
        raise self._abort_after(partition, producer, refused, failure)

    def _commit(self, producer: Producer) -> None:
        while True:
            try:
                producer.commit_transaction(COMMIT_TIMEOUT_S)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable():
                    raise
                log.warning("committing a transaction: %s; trying again", exc.args[0])

    def _abort_after(self, partition: int, producer: Producer, refused: Sequence[tuple[str, KafkaError]],
                     error: KafkaError | None) -> CommitFailed:
        """Abort the open transaction; the CommitFailed that says why (permanent only when a record can never be
        written and the abort went through: the producer can then go on)."""
        aborted = True
        try:
            producer.abort_transaction(ABORT_TIMEOUT_S)
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise Fenced(partition, str(exc.args[0])) from None
            aborted = False  # the broker aborts it once this producer's epoch is fenced by the next owner
            log.info("table partition %d: aborting a transaction: %s", partition, exc.args[0])
        errors = [f"{topic}: {err.str()}" for topic, err in refused]
        if error is not None:
            errors.append(error.str())
        permanent = aborted and any(err.code() in PERMANENT_RECORD_ERRORS for _, err in refused)
        return CommitFailed(partition, errors, permanent)

    def _maybe_crash(self, records: Sequence[OutputRecord]) -> None:
        self.written += 1
        if (self.crash_before_commit and self.written >= self.crash_before_commit) or (
                self.crash_when is not None and self.crash_when(records)):
            log.error("fault injection: exiting with a transaction written but not committed")
            logging.shutdown()
            os._exit(86)
