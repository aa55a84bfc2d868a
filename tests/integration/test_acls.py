"""Least privilege on a secured broker (SASL_SSL, StandardAuthorizer, nothing allowed that no ACL allows), with the
ACLs and channel users `stocksync acl apply` derives from the network: each forgery once seen on an open cluster is
now refused by the broker itself, a channel cannot read another's feed or replies, and a channel taken out of the
network loses its access on the next apply."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from streams.channel import ChannelAccessDenied, ChannelClient
from streams.control import acls
from streams.dev.local_kafka import LocalKafka
from streams.domain import Kind, Network
from streams.kafka.clients import new_consumer, new_producer
from streams.security import KafkaConnection, KafkaSecurity
from streams.wire.codec import default_codec
from streams.wire.records import network_to_record
from streams.wire.schemas import Schema
from tests.integration.harness import Deployment
from tests.integration.test_security import cli
from tests.integration.workload import NETWORK

FORGED_VERSION = 2 ** 62
# Users are the cluster's, not a deployment's: this module's channels have names of their own.
PRINCIPALS = acls.Principals(channel_template=f"User:acl{os.getpid()}-{{channel}}")


def user(channel: str) -> str:
    return PRINCIPALS.channel(channel).removeprefix("User:")


@pytest.fixture(scope="module")
def guarded(secured: LocalKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A deployment on the secured broker: topics and network made by the admin, ACLs and channel users applied."""
    tmp = tmp_path_factory.mktemp("acls")
    deployment = Deployment(secured.bootstrap_servers, f"acl-{os.getpid()}", tmp,
                            security=secured.client_security("admin"),
                            worker_security=secured.client_security("stocksync"))
    deployment.apply_network(NETWORK)
    acls.apply(deployment.admin, deployment.registry, deployment.network.channels, PRINCIPALS,
               passwords=tmp / "passwords")
    yield deployment
    deployment.stop_all()


def channel_security(deployment: Deployment, channel: str) -> KafkaSecurity:
    """How channel `channel` connects: as its own SCRAM user, with the password `acl apply` made."""
    return replace(deployment.security, username=user(channel),
                   password=(deployment.tmp / "passwords" / f"{user(channel)}.password").read_text())


def write_as(deployment: Deployment, security: KafkaSecurity, topic: str, value: bytes, key: bytes) -> str | None:
    """Produce one record as `security`'s principal: None once the broker has it, else the broker's error name.
    A plain producer (no idempotence), as any Kafka client a forger might use."""
    producer = new_producer(KafkaConnection(deployment.bootstrap, security),
                            **{"enable.idempotence": False, "message.timeout.ms": 20_000})
    outcome: list[str | None] = []
    producer.produce(topic, value, key, on_delivery=lambda err, msg: outcome.append(err.name() if err else None))
    producer.flush(30)
    assert outcome, f"no delivery report for {topic}"
    return outcome[0]


def read_as(deployment: Deployment, channel: str, topic: str) -> str | None:
    """Read partition 0 of `topic` from its start as channel `channel`, in a group of its own prefix: None if a
    record (or the end) comes, else the broker's error name."""
    group = f"{deployment.registry.prefix}.channel.{channel}.probe-{uuid.uuid4()}"
    consumer = new_consumer(KafkaConnection(deployment.bootstrap, channel_security(deployment, channel)), group,
                            **{"enable.partition.eof": True})
    try:
        # The broker answers a topic it does not authorize with an error in its metadata; fetching it gives
        # nothing at all (librdkafka waits for a leader it is never told of).
        error = consumer.list_topics(topic, timeout=10).topics[topic].error
        if error is not None:
            return str(error.name())
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is None or error.code() == KafkaError._PARTITION_EOF:  # noqa: SLF001 - librdkafka's names
                return None
            return str(error.name())
        raise AssertionError(f"neither a record nor an error from {topic} in 30 s")
    finally:
        consumer.close()


def forged_ats(channel: str) -> bytes:
    return default_codec().encode(Schema.ATS_UPDATE, {
        "channel": channel, "sku": "SKU-0001", "ats": 500, "version": FORGED_VERSION, "network_version": 0,
        "updated_at": int(time.time() * 1000)})


def forged_decision(channel: str) -> bytes:
    return default_codec().encode(Schema.RESERVATION_DECISION, {
        "channel": channel, "reservation_id": "r-forged", "sku": "SKU-0001", "accepted": True, "quantity": 5,
        "reason": "accepted", "parts": [{"location": "w1", "quantity": 5}], "expires_at": None, "version": 1,
        "event_id": "r-forged", "decided_at": int(time.time() * 1000)})


def forged_network() -> bytes:
    data: dict[str, Any] = {**NETWORK, "channels": [
        *[{**c, "buffer": 0} for c in NETWORK["channels"]],
        {"id": "intruder", "locations": [loc["id"] for loc in NETWORK["locations"]]}]}
    return default_codec().encode(Schema.NETWORK_CONFIG, network_to_record(Network.from_dict(data), 0))


def test_a_channel_writes_its_own_inputs_and_the_broker_refuses_every_forgery(guarded: Deployment) -> None:
    registry, web = guarded.registry, channel_security(guarded, "web")
    batch = b"not a batch: the pipeline's to dead-letter"
    # What a channel may do: write its own sales and restock topics (what it writes is the pipeline's to judge).
    assert write_as(guarded, web, registry.sales("web").name, batch, b"SKU-0001") is None
    assert write_as(guarded, web, registry.restock("web").name, batch, b"SKU-0001") is None
    forgeries = {
        "its own ATS feed at version 2^62": (registry.ats("web").name, forged_ats("web")),
        "another channel's ATS feed": (registry.ats("app").name, forged_ats("app")),
        "an accepted decision on its own replies": (registry.replies("web").name, forged_decision("web")),
        "a network with a new channel owning everything": (registry.network.name, forged_network()),
        "the stock changelog (on_hand 999)": (registry.stock_changelog.name, b"on_hand 999"),
        "the positions": (registry.positions.name, b"forged"),
        "the ledger": (registry.ledger.name, b"forged"),
        "the expiries (ending holds early)": (registry.expiries.name, b"forged"),
        "the order steps (holds no coordinator asked for)": (registry.order_steps.name, b"forged"),
        "another channel's sales": (registry.sales("app").name, batch),
    }
    refused = {what: write_as(guarded, web, topic, value, b"SKU-0001") for what, (topic, value) in forgeries.items()}
    assert refused == dict.fromkeys(forgeries, "TOPIC_AUTHORIZATION_FAILED")


def test_a_channel_reads_its_own_feed_and_replies_but_not_another_channels(guarded: Deployment) -> None:
    registry = guarded.registry
    assert read_as(guarded, "web", registry.ats("web").name) is None
    assert read_as(guarded, "web", registry.replies("web").name) is None
    others = {topic: read_as(guarded, "web", topic) for topic in (
        registry.ats("app").name, registry.replies("app").name, registry.sales("app").name,
        registry.sales("web").name, registry.ledger.name, registry.positions.name, registry.stock_changelog.name)}
    assert others == dict.fromkeys(others, "TOPIC_AUTHORIZATION_FAILED")
    # The SDK says so in one line, rather than that the topic does not exist.
    with pytest.raises(ChannelAccessDenied, match="not allowed to write topic .*channel.app.sales"):
        ChannelClient("app", KafkaConnection(guarded.bootstrap, channel_security(guarded, "web")),
                      settings=guarded.settings)


def test_channels_work_end_to_end_with_a_worker_holding_only_its_acls(guarded: Deployment) -> None:
    guarded.start_worker("w1")
    settings = guarded.settings
    with ChannelClient("wms", KafkaConnection(guarded.bootstrap, channel_security(guarded, "wms")),
                       settings=settings) as wms, \
            ChannelClient("web", KafkaConnection(guarded.bootstrap, channel_security(guarded, "web")),
                          settings=settings) as web:
        wms.report(Kind.RECEIPT, "SKU-ACL", "w1", 10, event_id="r-acl-1")
        wms.flush()
        decision = web.reserve("SKU-ACL", 3, reservation_id="res-acl-1", timeout_s=60)
        assert decision.accepted and sum(units for _, units in decision.parts) == 3
        seen: dict[str, int] = {}
        web.subscribe_ats(lambda update: seen.__setitem__(update.sku, update.ats))
        deadline = time.monotonic() + 60
        while seen.get("SKU-ACL") != 10 - 3 - 2 and time.monotonic() < deadline:  # web's buffer is 2
            time.sleep(0.1)
        assert seen.get("SKU-ACL") == 5


def test_a_channel_taken_out_of_the_network_loses_its_access_on_the_next_apply(
        guarded: Deployment, secured: LocalKafka) -> None:
    registry = guarded.registry
    env = {**secured.client_security("admin").environment(), "STOCKSYNC_BOOTSTRAP_SERVERS": guarded.bootstrap,
           "STOCKSYNC_TOPIC_PREFIX": registry.prefix, "STOCKSYNC_APP_ID": guarded.settings.app_id,
           "STOCKSYNC_CHANNEL_PRINCIPAL": PRINCIPALS.channel_template}
    shown = cli(["acl", "show"], env)
    assert shown.returncode == 0, shown.stderr
    assert f"User:{user('market')}\tWRITE\ttopic\t{registry.sales('market').name}" in shown.stdout.splitlines()
    market = channel_security(guarded, "market")
    assert write_as(guarded, market, registry.sales("market").name, b"{}", b"SKU-0001") is None

    smaller = guarded.tmp / "without-market.yaml"
    smaller.write_text(yaml.safe_dump({**NETWORK, "channels": [c for c in NETWORK["channels"]
                                                               if c["id"] != "market"]}))
    applied = cli(["acl", "apply", str(smaller), "--passwords", str(guarded.tmp / "passwords")], env)
    assert applied.returncode == 0, applied.stderr
    assert f"- User:{user('market')}\tWRITE\ttopic\t{registry.sales('market').name}" in applied.stdout.splitlines()
    assert f"user {user('market')} deleted" in applied.stdout
    assert not any(line.startswith("+") for line in applied.stdout.splitlines())
    shown = cli(["acl", "show"], env)
    assert user("market") not in shown.stdout and f"User:{user('web')}\t" in shown.stdout
    # Its user is gone too: the broker no longer lets it in at all.
    assert write_as(guarded, market, registry.sales("market").name, b"{}", b"SKU-0001") in (
        "_AUTHENTICATION", "_MSG_TIMED_OUT", "TOPIC_AUTHORIZATION_FAILED")

    again = cli(["acl", "apply", "--passwords", str(guarded.tmp / "passwords")], env)  # the network in force
    assert again.returncode == 0, again.stderr
    assert f"user {user('market')} created" in again.stdout
    assert write_as(guarded, channel_security(guarded, "market"), registry.sales("market").name, b"{}",
                    b"SKU-0001") is None
