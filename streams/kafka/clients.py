"""Kafka clients with the project's settings: every producer, consumer and admin client is made here.

Every producer is idempotent, waits for all in-sync replicas and uses Kafka's murmur2 partitioner (confluent-kafka's
default is not murmur2), so every producer and the workers agree where a SKU lives.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Message

# The client types the other packages name: they reach confluent-kafka through this module only (aiokafka through
# streams.kafka.aio).
from confluent_kafka import Consumer as Consumer
from confluent_kafka import KafkaError as KafkaError
from confluent_kafka import KafkaException as KafkaException
from confluent_kafka import Producer as Producer
from confluent_kafka import TopicPartition as TopicPartition
from confluent_kafka.admin import AdminClient as AdminClient

from streams.errors import AccessDenied, StocksyncError
from streams.security import KafkaConnection, connection_of

DeliveryCallback = Callable[[Any, Any], None]

# librdkafka's own log lines go through Python's logging (formatted like every other line, JSON included) instead
# of straight to stderr. They are delivered when a client is polled.
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")
PRODUCER_SETTINGS: dict[str, Any] = {"enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random"}


# The last authentication or TLS failures clients reported (librdkafka's error callback), with the connection
# and when: a request that then fails with "broker transport failure" is explained by them (explain_failure).
_ACCESS_ERRORS = {KafkaError._AUTHENTICATION: "sasl", KafkaError._SSL: "tls"}  # noqa: SLF001 - librdkafka's names
_ACCESS_FAILURES: dict[str, tuple[KafkaConnection, str, float]] = {}
ACCESS_FAILURE_RECENT_S = 120.0


def _on_error(kafka: KafkaConnection, error: KafkaError) -> None:
    kind = _ACCESS_ERRORS.get(error.code())
    # A broker that refuses our client certificate (or the lack of one) says so with a TLS alert, which librdkafka
    # reports as a transport failure.
    if kind is None and error.code() == KafkaError._TRANSPORT and "alert" in error.str() \
            and "certificate" in error.str():  # noqa: SLF001 - librdkafka's names
        kind = "tls"
    if kind is not None:
        _ACCESS_FAILURES[kind] = (kafka, error.str().split(" (after")[0], time.monotonic())


def _connect(target: KafkaConnection | str) -> dict[str, Any]:
    """librdkafka's settings to reach `target`: its servers, its security, our logger and error callback."""
    kafka = connection_of(target)
    return {"bootstrap.servers": kafka.servers, "logger": LIBRDKAFKA_LOG, "error_cb": partial(_on_error, kafka),
            **kafka.security.librdkafka(), **dict(kafka.librdkafka)}


def _recent_access_failures() -> dict[str, tuple[KafkaConnection, str, float]]:
    return {kind: found for kind, found in _ACCESS_FAILURES.items()
            if time.monotonic() - found[2] < ACCESS_FAILURE_RECENT_S}


def access_refused() -> bool:
    """Whether Kafka refused a client's credentials or TLS handshake lately (retrying will not help)."""
    return bool(_recent_access_failures())


def explain_failure(exc: KafkaException, client: AdminClient | Consumer | None = None) -> str:
    """Why a request failed, in one line: when Kafka refused the credentials or the TLS handshake failed just
    before, that, naming the settings to fix (never the password); else Kafka's own error. `client`: the one that
    failed, polled first for the errors it has not delivered yet (only an admin client, or a consumer that has no
    partitions: polling would take a message)."""
    for polled in [client] if client is not None else list(_RECENT_ADMINS):
        polled.poll(0)
    recent = _recent_access_failures()
    if "sasl" in recent and recent["sasl"][0].security.oauth is not None:
        kafka, text, _ = recent["sasl"]
        assert kafka.security.oauth is not None
        return (f"Kafka at {kafka.servers} refused the OAUTHBEARER sign-in of client "
                f"{kafka.security.oauth.client_id!r}: {text}; check STOCKSYNC_OAUTH_TOKEN_URL, "
                "STOCKSYNC_OAUTH_CLIENT_ID and STOCKSYNC_OAUTH_CLIENT_SECRET (or _FILE), and that the brokers "
                "trust the identity provider's keys")
    if "sasl" in recent:
        kafka, text, _ = recent["sasl"]
        return (f"Kafka at {kafka.servers} refused user {kafka.security.username!r} ({kafka.security.mechanism}): "
                f"{text}; check STOCKSYNC_SASL_USERNAME and STOCKSYNC_SASL_PASSWORD (or STOCKSYNC_SASL_PASSWORD_FILE)")
    if "tls" in recent:
        kafka, text, _ = recent["tls"]
        certificate = " and STOCKSYNC_SSL_CERT_FILE/STOCKSYNC_SSL_KEY_FILE (a client certificate the brokers trust)" \
            if kafka.security.protocol == "SSL" else ""
        return (f"TLS with Kafka at {kafka.servers} failed: {text}; check STOCKSYNC_SECURITY_PROTOCOL, "
                f"STOCKSYNC_SSL_CA_FILE (the CA that signed the brokers' certificates){certificate}")
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    return error.str() if error is not None else str(exc)


def new_producer(servers: KafkaConnection | str, **overrides: Any) -> Producer:
    """A confluent-kafka producer with the project's settings (`overrides` in librdkafka's names)."""
    return Producer({**_connect(servers), **PRODUCER_SETTINGS, **overrides})


# Kafka Streams' value for exactly-once: a worker that dies mid-transaction holds back read_committed readers of
# the partitions it wrote for at most this long (less when its successor fences it first, which it does at once).
TRANSACTION_TIMEOUT_MS = 10_000


def new_transactional_producer(servers: KafkaConnection | str, transactional_id: str, **overrides: Any) -> Producer:
    """A producer whose records are written in transactions; a newer producer with the same `transactional_id`
    fences it (its next commit fails) and aborts its open transaction."""
    return new_producer(servers, **{"transactional.id": transactional_id,
                                    "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS, **overrides})


def new_consumer(servers: KafkaConnection | str, group_id: str, **overrides: Any) -> Consumer:
    """A confluent-kafka consumer that commits nothing unless asked (`overrides` in librdkafka's names). It reads
    committed records only (librdkafka's default isolation.level): aborted transactions are never seen."""
    return Consumer({**_connect(servers), "group.id": group_id, "enable.auto.commit": False, **overrides})


def reader_group(topic: str) -> str:
    """The group of a consumer that reads `topic` by assignment: never joined and nothing committed, but librdkafka
    still looks its coordinator up. Named after the topic, it falls under the reader's group ACLs (a channel's
    `<prefix>.channel.<id>.*`), so a cluster with ACLs logs no denial for it."""
    return f"{topic}.reader-{uuid.uuid4()}"


def unassigned_consumer(servers: KafkaConnection | str, topic: str) -> Consumer:
    """A consumer for explicitly assigned partitions (of `topic`, first of all): its group is its own and nothing
    is committed."""
    return new_consumer(servers, reader_group(topic), **{"enable.partition.eof": False})


def assigned_consumer(servers: KafkaConnection | str, topic: str, after: dict[int, int], **overrides: Any
                      ) -> Consumer:
    """A consumer of `topic` (committed records only) assigned each partition from after the offset `after` gives
    it (-1: from the start); its group is its own and nothing is committed."""
    consumer = new_consumer(servers, reader_group(topic), **{
        "enable.partition.eof": False, "auto.offset.reset": "earliest", **overrides})
    consumer.assign([TopicPartition(topic, p, start + 1 if start >= 0 else OFFSET_BEGINNING)
                     for p, start in sorted(after.items())])
    return consumer


def committed_records(consumer: Consumer, most: int, timeout_s: float) -> Iterator[Message]:
    """What one read returns (up to `most` records), in order. A fatal error raises; any other (a broker away,
    which librdkafka retries) is read past."""
    for message in consumer.consume(most, timeout=timeout_s):
        error = message.error()
        if error is None:
            yield message
        elif error.fatal():
            raise KafkaException(error)


def records_behind(consumer: Consumer, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """Per assigned partition of `topic` whose position and end are both known, the records not yet read (about:
    the position skips commit markers)."""
    behind = {}
    for position in consumer.position([TopicPartition(topic, p) for p in partitions]):
        _, high = consumer.get_watermark_offsets(position, cached=True)
        if position.offset >= 0 and high >= 0:
            behind[position.partition] = max(0, high - position.offset)
    return behind


# The admin clients made last: a request of one that fails is explained by the errors it has not delivered yet,
# which only a poll hands over (explain_failure polls them when it is not given the client).
_RECENT_ADMINS: deque[AdminClient] = deque(maxlen=4)


def new_admin(servers: KafkaConnection | str, **overrides: Any) -> AdminClient:
    admin = AdminClient({**_connect(servers), **overrides})
    _RECENT_ADMINS.append(admin)
    return admin


# --- producing ----------------------------------------------------------------------------------------------
def offer(producer: Producer, topic: str, value: bytes | None, key: bytes | None, partition: int | None = None,
          on_delivery: DeliveryCallback | None = None) -> bool:
    """Queue one record; False while librdkafka's local queue is full (poll to let it drain, then offer again)."""
    try:
        if partition is None:
            producer.produce(topic, value, key, on_delivery=on_delivery)
        else:
            producer.produce(topic, value, key, partition, on_delivery=on_delivery)
    except BufferError:
        return False
    return True


def produce(producer: Producer, topic: str, value: bytes | None, key: bytes | None, partition: int | None = None,
            on_delivery: DeliveryCallback | None = None) -> None:
    """Queue one record, waiting while the local queue is full."""
    while not offer(producer, topic, value, key, partition, on_delivery):
        producer.poll(0.1)


async def produce_async(producer: Producer, topic: str, value: bytes | None, key: bytes | None,
                        partition: int | None = None, on_delivery: DeliveryCallback | None = None) -> None:
    """Queue one record; while the local queue is full, the event loop runs on as it drains."""
    while not offer(producer, topic, value, key, partition, on_delivery):
        await asyncio.get_running_loop().run_in_executor(None, producer.poll, 0.1)


# --- reading explicitly assigned partitions -----------------------------------------------------------------
_NOT_READY_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                  KafkaError.UNKNOWN_TOPIC_OR_PART,
                  KafkaError._TIMED_OUT}  # noqa: SLF001 - librdkafka names its local errors with a "_"


def watermarks(consumer: Consumer, tp: TopicPartition, wait_s: float = 30.0) -> tuple[int, int]:
    """A partition's low and high offsets, waiting out a topic so new that its leader is not known yet."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            if exc.args[0].code() not in _NOT_READY_YET or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def topic_metadata(metadata: Any, topic: str, doing: str) -> Any:
    """`topic`'s metadata, or None if it does not exist; AccessDenied when the cluster's ACLs hide it from us (a
    channel asking for another channel's feed): that is not a missing topic, and saying so would mislead."""
    found = metadata.topics.get(topic)
    error = found.error if found is not None else None
    if error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        raise AccessDenied(f"not allowed to {doing} topic {topic}: the cluster's ACLs do not grant it to this "
                           "principal ('stocksync acl show' lists what is granted)")
    return found if found is not None and error is None and found.partitions else None


def start_positions(consumer: Consumer, topic: str, from_beginning: bool
                    ) -> tuple[list[TopicPartition], dict[int, int]]:
    """Every partition of `topic` at its start or at its current end (explicit offsets: nothing produced after
    this call can slip past), and the end offsets found."""
    found = topic_metadata(consumer.list_topics(topic, timeout=10), topic, "read")
    if found is None:
        raise StocksyncError(f"topic {topic} does not exist")
    ends: dict[int, int] = {}
    positions = []
    for partition in sorted(found.partitions):
        _, high = watermarks(consumer, TopicPartition(topic, partition))
        ends[partition] = high
        positions.append(TopicPartition(topic, partition, OFFSET_BEGINNING if from_beginning else high))
    return positions, ends


def end_offsets(servers: KafkaConnection | str, topics: list[str]) -> dict[tuple[str, int], int]:
    """Every partition's end offset, for each of `topics`."""
    consumer = new_consumer(servers, reader_group(topics[0]))
    try:
        return {(topic, partition): end for topic in topics
                for partition, end in start_positions(consumer, topic, from_beginning=False)[1].items()}
    finally:
        consumer.close()


def reached(consumer: Consumer, topic: str, ends: dict[int, int]) -> bool:
    """True once the consumer's position in each partition of `topic` is at or past its end offset in `ends`.
    Positions, not the offsets of messages seen: a partition written in transactions ends with a commit marker,
    which no consumer is given, so its last message is never at end - 1."""
    wanted = [TopicPartition(topic, p) for p, end in ends.items() if end > 0]
    return all(tp.offset >= ends[tp.partition] for tp in consumer.position(wanted)) if wanted else True


def last_committed_offsets(servers: KafkaConnection | str, partitions: list[tuple[str, int]], timeout_s: float = 60.0
                           ) -> dict[tuple[str, int], int]:
    """For each (topic, partition), the offset of its last committed record (-1 if it has none): what a
    read_committed reader has seen once it is up to date. The partition's end offset is past that by the commit
    markers and any aborted records, so it cannot tell a recovering reader when it is done. Read from the end
    backwards in growing windows, so only the tail is fetched. A broker going away meanwhile (a leader moving)
    means reading again, within `timeout_s`: a worker's recovery depends on it (it crashed the worker once)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _last_committed_offsets(servers, partitions, max(1.0, deadline - time.monotonic()))
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if (error is not None and error.fatal()) or time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def _last_committed_offsets(servers: KafkaConnection | str, partitions: list[tuple[str, int]], timeout_s: float
                            ) -> dict[tuple[str, int], int]:
    # An end is known from the fetch that reaches it: the broker must not hold that fetch open waiting for more.
    consumer = new_consumer(servers, reader_group(partitions[0][0] if partitions else "stocksync"),
                            **{"enable.partition.eof": True, "fetch.wait.max.ms": 10})
    try:
        found: dict[tuple[str, int], int] = {}
        bounds = {}
        for topic, partition in partitions:
            low, high = watermarks(consumer, TopicPartition(topic, partition))
            bounds[(topic, partition)] = (low, high)
            if high <= low:
                found[(topic, partition)] = -1
        window = 64
        deadline = time.monotonic() + timeout_s
        while len(found) < len(partitions):
            todo = {tp: bounds[tp] for tp in partitions if tp not in found}
            starts = {tp: max(low, high - window) for tp, (low, high) in todo.items()}
            consumer.assign([TopicPartition(t, p, starts[(t, p)]) for t, p in todo])
            last: dict[tuple[str, int], int] = {}
            at_end: set[tuple[str, int]] = set()
            while len(at_end) < len(todo):
                if time.monotonic() > deadline:
                    raise StocksyncError(f"could not read the end of {sorted(set(todo) - at_end)} in {timeout_s} s")
                message = consumer.poll(0.5)
                if message is None:
                    continue
                tp = (str(message.topic()), int(message.partition() or 0))
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:  # noqa: SLF001 - librdkafka's local error names
                        raise KafkaException(error)
                    at_end.add(tp)
                elif tp in todo:
                    last[tp] = max(last.get(tp, -1), int(message.offset() or 0))
            for tp in todo:
                if tp in last or starts[tp] <= todo[tp][0]:
                    found[tp] = last.get(tp, -1)  # nothing committed in the whole partition: -1
            window *= 16
        return found
    finally:
        consumer.close()


def assign_all(consumer: Consumer, topic: str, from_beginning: bool) -> dict[int, int]:
    """Assign every partition of `topic` (see start_positions); returns the end offsets found."""
    positions, ends = start_positions(consumer, topic, from_beginning)
    consumer.assign(positions)
    return ends
