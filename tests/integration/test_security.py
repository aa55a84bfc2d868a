"""A secured cluster (a broker of its own: TLS with a certificate made by the project, SASL users): a worker, the
CLI and a channel client work end to end over SASL_SSL; a wrong password, a client without TLS and a missing CA
fail with one clear line; the password appears in no log, no /ready and no metric."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from streams.channel import ChannelAccessDenied, ChannelClient
from streams.control import acls
from streams.dev.certificates import CertificateAuthority
from streams.dev.local_kafka import LocalKafka
from streams.domain import Kind
from streams.security import KafkaConnection, KafkaSecurity, OAuthClient
from tests.integration.conftest import repo_root, wait_for
from tests.integration.harness import Deployment
from tests.integration.identity_provider import IdentityProvider
from tests.integration.workload import NETWORK


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STOCKSYNC_", "KAFKA_"))}
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=repo_root(), capture_output=True,
                          text=True, timeout=120, env={**clean, "STOCKSYNC_CACHE_DIR": os.environ.get(
                              "STOCKSYNC_CACHE_DIR", str(repo_root() / ".cache")), **env})


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"])
def test_a_worker_and_a_channel_work_end_to_end_over_sasl_ssl_with_least_privilege(
        secured: LocalKafka, identity_provider: IdentityProvider, tmp_path: Path, mechanism: str) -> None:
    """The worker connects as stocksync (PLAIN, SCRAM, or OAUTHBEARER with a token of the identity provider whose
    subject is stocksync) with only the ACLs `acl apply` gives it, the channel as its own SCRAM user with only its
    own. With OAUTHBEARER every side of the worker signs in with tokens: librdkafka's (transactions, admin),
    aiokafka's (its input reader) and faust's."""
    worker_security = replace(secured.client_security("stocksync"), mechanism=mechanism)  # type: ignore[arg-type]
    if mechanism == "OAUTHBEARER":
        worker_security = replace(worker_security, username=None, password=None, oauth=OAuthClient(
            identity_provider.token_url, "stocksync", identity_provider.clients["stocksync"]))
    issued_before = identity_provider.issued.count("stocksync")
    unique = f"sec-{mechanism.lower()}-{os.getpid()}"
    deployment = Deployment(secured.bootstrap_servers, unique, tmp_path, security=secured.client_security("admin"),
                            worker_security=worker_security)
    try:
        deployment.apply_network(NETWORK)
        principals = acls.Principals(channel_template=f"User:{unique}-{{channel}}")  # users are the cluster's
        acls.apply(deployment.admin, deployment.registry, deployment.network.channels, principals,
                   passwords=tmp_path / "passwords")
        worker = deployment.start_worker("w1")
        wms_security = replace(worker_security, mechanism="SCRAM-SHA-512", username=f"{unique}-wms",
                               password=(tmp_path / "passwords" / f"{unique}-wms.password").read_text())
        with ChannelClient("wms", KafkaConnection(secured.bootstrap_servers, wms_security),
                           settings=deployment.settings) as wms:
            seen: dict[str, int] = {}
            wms.subscribe_ats(lambda update: seen.__setitem__(update.sku, update.ats))
            wms.report(Kind.RECEIPT, "SKU-SEC", "w1", 12, event_id="r-sec-1")
            wms.flush()
            wait_for(lambda: seen.get("SKU-SEC") == 12, 60, "the ATS update over SASL_SSL")
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/ready", timeout=5) as response:
            ready = response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
    finally:
        deployment.stop_all()
    assert "denied" not in worker.log.read_text().lower()
    if mechanism == "OAUTHBEARER":  # librdkafka's and aiokafka's sign-ins each asked for a token
        assert identity_provider.issued.count("stocksync") - issued_before >= 2
    secret = worker_security.oauth.client_secret if worker_security.oauth else worker_security.password
    for password in (secret, wms_security.password):
        assert password is not None
        for where, text in (("/ready", ready), ("/metrics", metrics), ("the worker's log", worker.log.read_text())):
            assert password not in text, f"a password is in {where}"


def test_a_wrong_password_fails_with_one_line_naming_what_to_fix(secured: LocalKafka, tmp_path: Path) -> None:
    env = {**replace(secured.client_security(), password="not-the-password").environment(),
           "STOCKSYNC_BOOTSTRAP_SERVERS": secured.bootstrap_servers, "STOCKSYNC_TOPIC_PREFIX": "t-wrong"}
    done = cli(["topics", "create"], env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[-1].startswith("stocksync: error: ") and "refused user 'stocksync' (SCRAM-SHA-512)" in lines[-1]
    assert "STOCKSYNC_SASL_PASSWORD" in lines[-1] and "Traceback" not in done.stderr
    assert "not-the-password" not in done.stdout + done.stderr


def test_tls_without_the_ca_or_without_tls_at_all_is_refused_clearly(secured: LocalKafka) -> None:
    right = secured.client_security()
    base = {"STOCKSYNC_BOOTSTRAP_SERVERS": secured.bootstrap_servers, "STOCKSYNC_TOPIC_PREFIX": "t-tls"}
    untrusted = cli(["topics", "create"], {**base, **replace(right, ca_file=None).environment()})  # system CAs
    assert untrusted.returncode == 2 and "TLS with Kafka at" in untrusted.stderr.splitlines()[-1]
    assert "STOCKSYNC_SSL_CA_FILE" in untrusted.stderr.splitlines()[-1]
    plaintext = cli(["topics", "create"], {**base, **KafkaSecurity().environment()})
    assert plaintext.returncode == 2 and "Traceback" not in plaintext.stderr
    assert plaintext.stderr.strip().splitlines()[-1].startswith("stocksync: error: cannot list topics: ")
    missing = cli(["topics", "create"], {**base, "STOCKSYNC_SECURITY_PROTOCOL": "SASL_SSL"})
    assert missing.returncode == 2 and "needs STOCKSYNC_SASL_USERNAME" in missing.stderr


def test_a_worker_and_a_channel_work_end_to_end_with_client_certificates(secured: LocalKafka, tmp_path: Path) -> None:
    """Mutual TLS: the certificate's CN is the principal (CN=stocksync is User:stocksync, with the workers' ACLs),
    on the broker's SSL listener."""
    unique = f"sec-mtls-{os.getpid()}"
    # The harness connects as admin over SASL_SSL; the worker and the channel over the certificates' listener.
    deployment = Deployment(secured.bootstrap_servers, unique, tmp_path, security=secured.client_security("admin"),
                            worker_security=secured.client_certificate("stocksync"))
    try:
        deployment.apply_network(NETWORK)
        principals = acls.Principals(channel_template=f"User:{unique}-{{channel}}")
        acls.apply(deployment.admin, deployment.registry, deployment.network.channels, principals)
        deployment.start_worker("w1", env={"STOCKSYNC_BOOTSTRAP_SERVERS": secured.mtls_bootstrap_servers})
        wms = KafkaConnection(secured.mtls_bootstrap_servers, secured.client_certificate(f"{unique}-wms"))
        with ChannelClient("wms", wms, settings=deployment.settings) as client:
            seen: dict[str, int] = {}
            client.subscribe_ats(lambda update: seen.__setitem__(update.sku, update.ats))
            client.report(Kind.RECEIPT, "SKU-MTLS", "w1", 7, event_id="r-mtls-1")
            client.flush()
            wait_for(lambda: seen.get("SKU-MTLS") == 7, 60, "the ATS update over mutual TLS")
        # A certificate the broker's CA signed, for a principal without ACLs: in, but refused everything.
        stranger = KafkaConnection(secured.mtls_bootstrap_servers, secured.client_certificate(f"{unique}-x"))
        with pytest.raises(ChannelAccessDenied):
            ChannelClient("wms", stranger, settings=deployment.settings)
    finally:
        deployment.stop_all()


def test_the_certificate_listener_refuses_a_client_without_a_certificate_in_one_line(
        secured: LocalKafka, tmp_path: Path) -> None:
    base = {"STOCKSYNC_BOOTSTRAP_SERVERS": secured.mtls_bootstrap_servers, "STOCKSYNC_TOPIC_PREFIX": "t-mtls"}
    right = secured.client_certificate("admin")
    without = cli(["topics", "create"], {**base, **replace(right, cert_file=None, key_file=None).environment()})
    assert without.returncode == 2 and without.stderr.strip().count("\n") == 0, without.stderr
    assert "STOCKSYNC_SSL_CERT_FILE" in without.stderr
    other_ca = CertificateAuthority(tmp_path / "other-ca").issue("admin", server=False)
    foreign = cli(["topics", "create"], {**base, **replace(right, cert_file=other_ca.cert,
                                                                 key_file=other_ca.key).environment()})
    assert foreign.returncode == 2 and "STOCKSYNC_SSL_CERT_FILE" in foreign.stderr.strip().splitlines()[-1]
    done = cli(["topics", "create"], {**base, **right.environment()})
    assert done.returncode == 0, done.stderr


def test_oauthbearer_sign_ins_refused_say_so_in_one_line(secured: LocalKafka, identity_provider: IdentityProvider
                                                          ) -> None:
    """A client secret the identity provider refuses, and a token the broker refuses (signed by a key it does not
    trust: Kafka verifies each token against the provider's keys), each end a command in one line."""
    base = {"STOCKSYNC_BOOTSTRAP_SERVERS": secured.bootstrap_servers, "STOCKSYNC_TOPIC_PREFIX": "t-oauth"}
    oauth = replace(secured.client_security("admin"), mechanism="OAUTHBEARER", username=None, password=None,
                    oauth=OAuthClient(identity_provider.token_url, "admin", identity_provider.clients["admin"]))
    right = cli(["topics", "list"], {**base, **oauth.environment()})
    assert right.returncode == 0, right.stderr

    assert oauth.oauth is not None
    wrong = cli(["topics", "list"], {**base, **replace(oauth, oauth=replace(oauth.oauth, client_secret="nope"))
                                     .environment()})
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr
    assert "Traceback" not in wrong.stderr and "nope" not in wrong.stderr
    assert "OAUTHBEARER" in wrong.stderr and "STOCKSYNC_OAUTH_CLIENT_SECRET" in wrong.stderr

    impostor = IdentityProvider({"admin": "admin-client-secret"}).start()  # same client, another signing key
    try:
        forged = cli(["topics", "list"], {**base, **replace(oauth, oauth=replace(
            oauth.oauth, token_url=impostor.token_url)).environment()})
    finally:
        impostor.stop()
    assert impostor.issued == ["admin"] or impostor.issued.count("admin") >= 1
    assert forged.returncode == 2 and len(forged.stderr.strip().splitlines()) == 1, forged.stderr
    assert "OAUTHBEARER" in forged.stderr and "Traceback" not in forged.stderr
