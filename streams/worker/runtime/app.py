"""The faust application: configured from Settings; the worker registers its table, timers and pages on it
(streams.worker.runtime.bootstrap)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import faust
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

from streams.kafka.aio import token_provider
from streams.kafka.clients import last_committed_offsets
from streams.kafka.cluster import connect
from streams.security import KafkaConnection, KafkaSecurity
from streams.settings import Settings

log = logging.getLogger("stocksync.worker")


@dataclass
class WorkerState:
    """What the worker's timers and pages share."""

    ready: bool = False  # the table is recovered: /ready answers 200 (unless rebalancing)
    rebuild_expiries: bool = True  # partitions were assigned: index their open holds (and republish held ATS)


class TableKeeper(Protocol):
    """What the worker does where faust would recover and follow the stock table itself (the Worker of
    streams.worker.runtime.bootstrap)."""

    async def fence(self, partitions: set[int]) -> None:
        """The table partitions this worker is about to recover: fence their earlier writers."""

    async def restore(self, ends: dict[int, int]) -> None:
        """Bring each partition's local store up to its last committed changelog offset
        (streams.worker.state.changelog)."""

    def follow_standbys(self, partitions: set[int]) -> None:
        """Follow the changelogs of the partitions this worker keeps standby replicas of (none while a rebalance
        is under way)."""


class StocksyncApp(faust.App):
    """faust's App, plus the worker's state (`worker_state`: faust's Service has a `state` of its own),
    `before_stop`: coroutines run when the app stops, before faust stops its consumer and tables (the input
    reader finishes its batch there), and `keeper`: who recovers and follows the table instead of faust.

    `committed_only`: the tables' changelogs are written in transactions (streams.worker.flow.transactions) by the
    app's own code, not through faust's agents. faust's consumer then reads committed records only, and its
    recovery knows where a partition's committed records end."""

    def __init__(self, *args: Any, kafka: KafkaConnection, committed_only: bool = False, **kwargs: Any) -> None:
        if committed_only:
            kwargs["TableManager"] = CommittedTableManager
        super().__init__(*args, **kwargs)
        self.kafka = kafka  # the cluster faust's broker URLs and credentials were made from
        self.committed_only = committed_only
        self.worker_state = WorkerState()
        self.before_stop: list[Callable[[], Awaitable[None]]] = []
        self.keeper: TableKeeper | None = None

    def _new_consumer(self) -> Any:
        consumer = super()._new_consumer()
        if self.committed_only:
            # faust's flag for its own exactly-once mode: its aiokafka consumer then reads with read_committed.
            # Set on the consumer alone (the app's flag would make faust open transactions of its own); faust
            # would commit an agent's offsets in transactions with it, so such an app has no agents.
            consumer.in_transaction = True
        return consumer

    async def on_stop(self) -> None:
        for hook in self.before_stop:
            await hook()
        await super().on_stop()

    def assigned_partitions(self, table: str = "stock") -> set[int]:
        """The partitions of `table` the consumer group gives this worker to own now (none while it rebalances)."""
        if self.rebalancing:
            return set()
        changelog = self.tables[table].changelog_topic.get_topic_name()
        return {tp.partition for tp in self.assignor.assigned_actives() if tp.topic == changelog}

    def request_rebalance(self) -> None:
        """Ask the consumer group to rebalance (Kafka Streams does the same on a fenced producer: its thread
        rejoins the group). faust has no call for it: its aiokafka consumer runs in a thread of its own, whose
        group coordinator is asked there."""
        thread = getattr(self.consumer, "_thread", None)
        try:
            coordinator = thread._ensure_consumer()._coordinator  # type: ignore[union-attr]  # noqa: SLF001
            thread.thread_loop.call_soon_threadsafe(coordinator.request_rejoin)  # type: ignore[union-attr]
        except (AttributeError, RuntimeError) as exc:  # not started or stopping: a rebalance comes anyway
            log.warning("could not ask for a rebalance: %r", exc)

    @property
    def recovered(self) -> asyncio.Event:
        """Set once faust has recovered this worker's table partitions."""
        event: asyncio.Event = self.tables.recovery.completed  # type: ignore[attr-defined]
        return event


class CommittedRecovery(Recovery):
    """faust's table recovery for a changelog written in transactions.

    faust waits until it has applied the record at "highwater - 1"; in a transactional partition that offset is a
    commit marker, which no consumer is given, so recovery would never end (faust's own fallback, for its own
    exactly-once mode, gives up waiting after 10 s). Here the highwater is the offset of the last committed record
    itself, and the partitions' earlier writers are fenced first, so nothing can be committed behind it."""

    async def _build_highwaters(self, consumer: Any, tps: set[TP], destination: Any, title: str) -> None:
        app = self.app
        assert isinstance(app, StocksyncApp)
        keeper = app.keeper if title == "active" else None
        if keeper is not None:
            await keeper.fence({tp.partition for tp in tps})
        found = await asyncio.get_running_loop().run_in_executor(
            None, last_committed_offsets, app.kafka, [(tp.topic, tp.partition) for tp in tps])
        destination.clear()
        destination.update({tp: found[(tp.topic, tp.partition)] for tp in tps})
        if keeper is not None:
            # The keeper's restore reads the partitions up to their ends; faust is then left nothing to read.
            await keeper.restore({tp.partition: found[(tp.topic, tp.partition)] for tp in tps})
            for tp in tps:
                self.active_offsets[tp] = found[(tp.topic, tp.partition)]

    def add_standby(self, table: Any, tp: TP) -> None:
        """faust reads no standby partition: the app's keeper follows them (TableKeeper.follow_standbys)."""


class CommittedTableManager(TableManager):
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = CommittedRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery

    def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self._follow_standbys(set())  # a rebalance starts: stores may be closed and partitions change hands
        super().on_partitions_revoked(revoked)

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        if generation_id == self.app.consumer_generation_id:  # else faust ignores this one: another comes
            changelogs = set(self._changelogs)
            self._follow_standbys({tp.partition for tp in self.app.assignor.assigned_standbys()
                                   if tp.topic in changelogs})

    def _follow_standbys(self, partitions: set[int]) -> None:
        app = self.app
        if isinstance(app, StocksyncApp) and app.keeper is not None:
            app.keeper.follow_standbys(partitions)


def create_app(settings: Settings, kafka: KafkaConnection | None = None, committed_only: bool = False
               ) -> StocksyncApp:
    """A faust App wired to the configured cluster, with the settings the streaming rules ask for (see
    StocksyncApp for `committed_only`)."""
    kafka = kafka or connect(settings)
    access = settings.api_access()
    return StocksyncApp(
        settings.app_id,
        kafka=kafka,
        broker=",".join(f"kafka://{server}" for server in kafka.servers.split(",")),
        broker_credentials=faust_credentials(kafka.security),
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        # Topics come from the registry (stocksync topics create); faust only declares its changelogs.
        topic_allow_declare=True,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout_s / 3),
        producer_acks=-1,  # acks=all; aiokafka's default partitioner is murmur2, like Kafka's Java client
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,  # faust binds every interface unless told
        # faust's own pages: "/" would serve its monitor's statistics (seconds to build), and the table and graph
        # pages internals; "/" is then a plain status answer.
        web_stats_enabled=False, web_graph_enabled=False, web_tables_enabled=False, web_router_enabled=False,
        canonical_url=settings.api_url,
        web_ssl_context=access.server_context(),
        consumer_auto_offset_reset="earliest",
        # faust's assignor places the standby replicas (and promotes one when an owner leaves); the worker follows
        # them itself (streams.worker.state.changelog). A memory store is gone with its process: nothing to keep warm.
        table_standby_replicas=settings.standby_replicas if settings.store == "rocksdb://" else 0,
        committed_only=committed_only,
    )


def faust_credentials(security: KafkaSecurity) -> Any:
    """faust's broker_credentials (None: plaintext)."""
    if security.sasl and security.oauth is not None:
        return faust.OAuthCredentials(oauth_cb=token_provider(security.oauth), ssl_context=security.ssl_context())
    if security.sasl:
        return faust.SASLCredentials(username=security.username, password=security.password,
                                     mechanism=security.mechanism, ssl_context=security.ssl_context())
    if security.tls:
        return faust.SSLCredentials(security.ssl_context())
    return None
