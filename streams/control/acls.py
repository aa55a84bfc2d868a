"""Least privilege, derived from the network: who may read and write which of the deployment's topics, groups and
transactional ids, as Kafka ACLs, and the SCRAM users of the channels.

A channel's principal writes only its own sales and restock topics and reads only its own ATS feed and replies
(and may use consumer groups named `<prefix>.channel.<id>.*`): the broker, not a convention, refuses a channel
that writes another's feed, a decision, the network or the stock changelog. The workers' principal reads the
inputs, writes the outputs and owns the stock table's changelog and transactions. The admin principal manages the
deployment's topics, the network and the ACLs themselves.

`plan` is pure (what should be in force); `apply` makes the cluster match it. Every ACL on a resource of this
deployment (a name under `<prefix>.` or `<app id>`) is owned by `apply`: one that the plan does not name is
removed, which is how a channel taken out of the network loses its access."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.errors import BrokerError, ConfigError
from streams.kafka.admin_api import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from streams.kafka.clients import AdminClient, KafkaError, KafkaException, explain_failure
from streams.kafka.topics import TopicRegistry

CLUSTER = "kafka-cluster"  # the name of Kafka's one cluster resource
SCRAM_ITERATIONS = 8192
PRINCIPAL = re.compile(r"^[A-Za-z]+:.+$")
# The SASL/SCRAM mechanisms a channel user is created with (clients pick one; both cost nothing to keep).
SCRAM_MECHANISMS = (ScramMechanism.SCRAM_SHA_512, ScramMechanism.SCRAM_SHA_256)


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL from any host: `principal` may do `operation` on a resource (`kind` topic, group,
    transactional_id or cluster) named `name`, or (prefixed) on every resource whose name starts with it."""

    principal: str
    kind: str
    name: str
    operation: str
    prefixed: bool = False

    def __str__(self) -> str:
        pattern = f"{self.name}*" if self.prefixed else self.name
        return f"{self.principal}\t{self.operation}\t{self.kind}\t{pattern}"


@dataclass(frozen=True)
class Principals:
    """Who is who: the workers, the admin, and the rule that names a channel's principal."""

    workers: str = "User:stocksync"
    admin: str = "User:admin"
    channel_template: str = "User:channel-{channel}"

    def __post_init__(self) -> None:
        for what, value in (("workers", self.workers), ("admin", self.admin),
                            ("channel principal", self.channel_template)):
            if not PRINCIPAL.match(value):
                raise ConfigError(f"{what} principal {value!r}: expected TYPE:NAME, e.g. User:stocksync")
        if "{channel}" not in self.channel_template:
            raise ConfigError(f"channel principal {self.channel_template!r} must contain {{channel}}")

    def channel(self, channel: str) -> str:
        return self.channel_template.replace("{channel}", channel)


def plan(registry: TopicRegistry, channels: Iterable[str], principals: Principals) -> list[Grant]:
    """Every ACL the deployment needs, and nothing else."""
    app_id, group = registry.settings.app_id, registry.settings.input_group
    channel_topics = f"{registry.prefix}.channel."
    grants: list[Grant] = []

    def allow(principal: str, kind: str, name: str, operations: Sequence[str], prefixed: bool = False) -> None:
        grants.extend(Grant(principal, kind, name, op, prefixed) for op in operations)

    workers = principals.workers
    # Every channel the network names, including one added while the workers run: they follow the network live.
    allow(workers, "topic", channel_topics, ("READ", "WRITE", "DESCRIBE_CONFIGS"), prefixed=True)
    for spec in (registry.positions, registry.ledger, registry.deadletter):
        allow(workers, "topic", spec.name, ("WRITE", "DESCRIBE_CONFIGS"))
    allow(workers, "topic", registry.expiries.name, ("READ", "WRITE", "DESCRIBE_CONFIGS"))
    allow(workers, "topic", registry.order_steps.name, ("READ", "WRITE", "DESCRIBE_CONFIGS"))
    allow(workers, "topic", registry.catalog.name, ("READ", "DESCRIBE_CONFIGS"))  # followed whole, never written
    # Transfer suggestions: written by a SKU's owner, read whole by every worker (for the API).
    allow(workers, "topic", registry.transfer_suggestions.name, ("READ", "WRITE", "DESCRIBE_CONFIGS"))
    allow(workers, "topic", registry.network.name, ("READ", "DESCRIBE_CONFIGS"))
    # The stock table's changelog and faust's own topics (it declares them: CREATE), all named "<app id>-...".
    allow(workers, "topic", f"{app_id}-", ("READ", "WRITE", "CREATE", "DESCRIBE_CONFIGS"), prefixed=True)
    allow(workers, "group", app_id, ("READ",))
    allow(workers, "group", group, ("READ",))
    # The groups of their consumers that read by assignment (clients.reader_group): looked up, never joined.
    allow(workers, "group", f"{app_id}-", ("DESCRIBE",), prefixed=True)
    allow(workers, "group", f"{registry.network.name}.", ("DESCRIBE",), prefixed=True)
    allow(workers, "transactional_id", f"{app_id}-stock-", ("WRITE", "DESCRIBE"), prefixed=True)

    admin = principals.admin
    allow(admin, "topic", f"{registry.prefix}.", ("ALL",), prefixed=True)
    allow(admin, "topic", f"{app_id}-", ("ALL",), prefixed=True)
    allow(admin, "group", f"{registry.prefix}.", ("ALL",), prefixed=True)
    allow(admin, "cluster", CLUSTER, ("DESCRIBE", "ALTER"))  # ACLs and SCRAM users

    for channel in sorted(set(channels)):
        principal = principals.channel(channel)
        for spec in (registry.sales(channel), registry.restock(channel)):
            allow(principal, "topic", spec.name, ("WRITE",))
        for spec in (registry.ats(channel), registry.replies(channel)):
            allow(principal, "topic", spec.name, ("READ",))
        allow(principal, "group", f"{channel_topics}{channel}.", ("READ",), prefixed=True)
    return sorted(set(grants))


# --- the cluster -----------------------------------------------------------------------------------------------
_KINDS = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP, "transactional_id": ResourceType.TRANSACTIONAL_ID,
          "cluster": ResourceType.BROKER}
_KIND_NAMES = {value: key for key, value in _KINDS.items()}


def _fields(grant: Grant) -> tuple[Any, ...]:
    """A grant as AclBinding's (and AclBindingFilter's) arguments: an ALLOW from any host."""
    return (_KINDS[grant.kind], grant.name,
            ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL,
            grant.principal, "*", AclOperation[grant.operation], AclPermissionType.ALLOW)


def owned(registry: TopicRegistry, grant: Grant, principals: Principals) -> bool:
    """Whether an ACL is this deployment's to manage: on one of its resources, or the admin's on the cluster."""
    if grant.kind == "cluster":
        return grant.principal == principals.admin
    app_id = registry.settings.app_id
    return grant.name == app_id or grant.name.startswith((f"{registry.prefix}.", f"{app_id}-", f"{app_id}."))


@dataclass
class InForce:
    """The deployment's ACLs on the cluster, and any the authorizer holds that are not plain ALLOWs from anywhere
    (a DENY or a host rule someone added by hand: shown, never touched)."""

    grants: list[Grant] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


def in_force(admin: AdminClient, registry: TopicRegistry, principals: Principals,
             timeout_s: float = 30.0) -> InForce:
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
                                  AclOperation.ANY, AclPermissionType.ANY)
    try:
        bindings = admin.describe_acls(everything, request_timeout=timeout_s).result()
    except KafkaException as exc:
        raise BrokerError(f"cannot read the ACLs: {_why(exc, admin)}") from None
    found = InForce()
    for binding in bindings:
        kind = _KIND_NAMES.get(binding.restype)
        if kind is None:
            continue
        grant = Grant(binding.principal, kind, binding.name, binding.operation.name,
                      binding.resource_pattern_type == ResourcePatternType.PREFIXED)
        if not owned(registry, grant, principals):
            continue
        if binding.permission_type == AclPermissionType.ALLOW and binding.host == "*":
            found.grants.append(grant)
        else:
            found.foreign.append(f"{grant} ({binding.permission_type.name} from {binding.host})")
    found.grants.sort()
    return found


def _why(exc: KafkaException, admin: AdminClient) -> str:
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    name = error.name() if error is not None else ""
    if name == "SECURITY_DISABLED":
        return "the cluster has no authorizer (set authorizer.class.name on the brokers)"
    if name == "CLUSTER_AUTHORIZATION_FAILED":
        return "not allowed: run it as a super user or a principal with ALTER and DESCRIBE on the cluster"
    return explain_failure(exc, admin)


@dataclass
class Applied:
    added: list[Grant] = field(default_factory=list)
    removed: list[Grant] = field(default_factory=list)
    users_created: list[str] = field(default_factory=list)
    users_deleted: list[str] = field(default_factory=list)


def changes(admin: AdminClient, registry: TopicRegistry, channels: Iterable[str], principals: Principals,
            timeout_s: float = 30.0) -> Applied:
    """What `apply` would add and remove (users aside): the plan against what is in force."""
    wanted = set(plan(registry, channels, principals))
    current = set(in_force(admin, registry, principals, timeout_s).grants)
    return Applied(added=sorted(wanted - current), removed=sorted(current - wanted))


def apply(admin: AdminClient, registry: TopicRegistry, channels: Iterable[str], principals: Principals,
          passwords: Path | None = None, timeout_s: float = 30.0) -> Applied:
    """Make the cluster's ACLs on this deployment equal the plan. With `passwords` (a directory), each channel
    whose principal is a user without SCRAM credentials gets one, with a new password written to
    `<dir>/<user>.password`; users of channels no longer in the network lose theirs (their file is removed)."""
    channels = sorted(set(channels))
    done = changes(admin, registry, channels, principals, timeout_s)
    if done.added:
        futures = admin.create_acls([AclBinding(*_fields(g)) for g in done.added], request_timeout=timeout_s)
        for binding, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                raise BrokerError(f"cannot create the ACL {binding}: {_why(exc, admin)}") from None
    if done.removed:
        for future in admin.delete_acls([AclBindingFilter(*_fields(g)) for g in done.removed],
                                        request_timeout=timeout_s).values():
            try:
                future.result()
            except KafkaException as exc:
                raise BrokerError(f"cannot delete ACLs: {_why(exc, admin)}") from None
    if done.added or done.removed:
        _await_in_force(admin, registry, principals, set(plan(registry, channels, principals)), timeout_s)
    if passwords is not None:
        _sync_users(admin, registry, channels, principals, passwords, done, timeout_s)
    return done


def _await_in_force(admin: AdminClient, registry: TopicRegistry, principals: Principals, wanted: set[Grant],
                    timeout_s: float) -> None:
    """Wait until the brokers answer with the new ACLs: the controller has them at once, the brokers' authorizers a
    moment later, and a client refused meanwhile would be refused for no reason it could see."""
    deadline = time.monotonic() + timeout_s
    while set(in_force(admin, registry, principals, timeout_s).grants) != wanted:
        if time.monotonic() > deadline:
            raise BrokerError(f"the brokers did not show the new ACLs within {timeout_s:.0f} s")
        time.sleep(0.2)


def _user(principal: str) -> str | None:
    kind, _, name = principal.partition(":")
    return name if kind == "User" else None


def _sync_users(admin: AdminClient, registry: TopicRegistry, channels: list[str], principals: Principals,
                passwords: Path, done: Applied, timeout_s: float) -> None:
    try:
        described: Any = admin.describe_user_scram_credentials(request_timeout=timeout_s)  # all users: one future
        existing = set(described.result())
    except KafkaException as exc:
        raise BrokerError(f"cannot read the SCRAM users: {_why(exc, admin)}") from None
    wanted = {user for user in (_user(principals.channel(c)) for c in channels) if user}
    # A channel's user that has gone: its principal had ACLs that `apply` just removed.
    gone = {user for user in (_user(g.principal) for g in done.removed) if user}
    gone = {user for user in gone - wanted if user in existing and (passwords / f"{user}.password").exists()}
    passwords.mkdir(parents=True, exist_ok=True, mode=0o700)
    made = {user: secrets.token_urlsafe(24) for user in sorted(wanted - existing)}
    # One alteration per user and request (the broker refuses two), so one request per mechanism.
    for mechanism in SCRAM_MECHANISMS:
        alterations: list[Any] = [
            UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, SCRAM_ITERATIONS), password.encode())
            for user, password in made.items()]
        alterations += [UserScramCredentialDeletion(user, mechanism) for user in sorted(gone)]
        if not alterations:
            return
        for user, future in admin.alter_user_scram_credentials(alterations, request_timeout=timeout_s).items():
            try:
                future.result()
            except KafkaException as exc:
                raise BrokerError(f"cannot change the SCRAM credentials of {user}: {_why(exc, admin)}") from None
    for user, password in made.items():
        path = passwords / f"{user}.password"
        path.write_text(password)
        path.chmod(0o600)
        done.users_created.append(user)
    for user in sorted(gone):
        (passwords / f"{user}.password").unlink(missing_ok=True)
        done.users_deleted.append(user)
