"""Bad settings and arguments give one line naming what is wrong; the registry names topics predictably."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.settings import load_settings


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("STOCKSYNC_PARTITIONS", "many", "STOCKSYNC_PARTITIONS: Input should be a valid integer"),
    ("STOCKSYNC_PARTITIONS", "0", "STOCKSYNC_PARTITIONS: Input should be greater than or equal to 1"),
    ("STOCKSYNC_STORE", "redis://", "STOCKSYNC_STORE: Input should be 'rocksdb://' or 'memory://'"),
    ("STOCKSYNC_BOOTSTRAP_SERVERS", "localhost", "STOCKSYNC_BOOTSTRAP_SERVERS: Value error, expected host:port"),
    ("KAFKA_BOOTSTRAP_SERVERS", "no-port", "STOCKSYNC_BOOTSTRAP_SERVERS: Value error, expected host:port"),
])
def test_bad_setting_is_one_line(variable: str, value: str, expected: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), variable: value}
    result = run_cli("topics", "list", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"stocksync: error: {expected}")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_bad_channel_argument_is_one_line() -> None:
    result = run_cli("topics", "list", "--channel", "Web Shop")
    assert result.returncode == 2
    assert result.stderr == ("stocksync: error: channel id 'Web Shop': use lowercase letters, digits, '-' or '_' "
                             "(max 63)\n")


def test_no_broker_configured_is_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "STOCKSYNC_CACHE_DIR": str(tmp_path)}
    result = run_cli("topics", "create", env=env)
    assert result.returncode == 2
    assert "no Kafka to talk to: set STOCKSYNC_BOOTSTRAP_SERVERS" in result.stderr
    assert result.stderr.count("\n") == 1


def test_unknown_command_is_argparse_usage() -> None:
    result = run_cli("frobnicate")
    assert result.returncode == 2 and "invalid choice: 'frobnicate'" in result.stderr


def test_settings_take_kafka_bootstrap_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STOCKSYNC_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "10.0.0.1:9092,10.0.0.2:9092")
    assert load_settings().bootstrap_servers == "10.0.0.1:9092,10.0.0.2:9092"
    monkeypatch.setenv("STOCKSYNC_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    assert load_settings().bootstrap_servers == "127.0.0.1:9092"


@pytest.mark.parametrize("command", [["worker"], ["broker"], ["topics"], ["network"], ["acl"], ["catalog"],
                                     ["load"], ["simulate"], ["demo"], ["query"], ["query", "positions"],
                                     ["query", "ats"], ["query", "alias"], ["query", "transfer-suggestions"],
                                     ["query", "source"]])
def test_every_command_has_help(command: list[str]) -> None:
    from streams.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit) as done:
        parser.parse_args([*command, "--help"])
    assert done.value.code == 0
    groups = parser._subparsers  # noqa: SLF001 - argparse has no public way to list subcommands
    assert groups is not None
    subcommands = groups._group_actions[0].choices  # noqa: SLF001
    assert isinstance(subcommands, dict)
    assert all(sub.description for sub in subcommands.values())


def test_version() -> None:
    from importlib import metadata

    result = run_cli("--version")
    assert (result.returncode, result.stdout) == (0, f"stocksync {metadata.version('stocksync')}\n")


def test_query_without_a_worker_is_one_line() -> None:
    result = run_cli("query", "--url", "http://127.0.0.1:9", "ats", "web", "SKU-1")
    assert result.returncode == 2
    assert result.stderr.startswith("stocksync: error: query: no worker answers at http://127.0.0.1:9")
    assert result.stderr.count("\n") == 1


def test_bad_simulation_argument_is_one_line() -> None:
    result = run_cli("simulate", "--rate", "fast")
    assert result.returncode == 2 and "argument --rate: 'fast' is not a number" in result.stderr


# --- connecting to a secured cluster -------------------------------------------------------------------------
def test_security_settings_become_the_same_connection_for_both_client_libraries(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("s3cret-value\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    for name, value in {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-256",
                        "SASL_USERNAME": "web", "SASL_PASSWORD_FILE": str(password_file),
                        "SSL_CA_FILE": str(ca)}.items():
        monkeypatch.setenv(f"STOCKSYNC_{name}", value)
    security = load_settings().kafka_security()
    assert security.librdkafka() == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256",
                                     "sasl.username": "web", "sasl.password": "s3cret-value",
                                     "ssl.ca.location": str(ca)}
    assert "s3cret" not in repr(security) and "s3cret" not in repr(load_settings())
    assert security.environment()["STOCKSYNC_SASL_PASSWORD"] == "s3cret-value"  # for a child process only


def test_an_oauthbearer_sign_in_becomes_the_same_for_both_client_libraries(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """librdkafka fetches its tokens itself (OIDC client credentials); aiokafka and faust get a token provider
    that fetches them from the same endpoint with the same client."""
    secret = tmp_path / "secret"
    secret.write_text("client-s3cret\n")
    for name, value in {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "OAUTHBEARER",
                        "OAUTH_TOKEN_URL": "https://idp.example/token", "OAUTH_CLIENT_ID": "stocksync",
                        "OAUTH_CLIENT_SECRET_FILE": str(secret), "OAUTH_SCOPE": "kafka"}.items():
        monkeypatch.setenv(f"STOCKSYNC_{name}", value)
    security = load_settings().kafka_security()
    assert security.librdkafka() == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER", "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
        "sasl.oauthbearer.client.id": "stocksync", "sasl.oauthbearer.client.secret": "client-s3cret",
        "sasl.oauthbearer.scope": "kafka"}
    from streams.kafka.aio import ClientCredentialsTokens, aiokafka_security

    options = aiokafka_security(security)
    assert options["sasl_mechanism"] == "OAUTHBEARER" and "sasl_plain_password" not in options
    assert isinstance(options["sasl_oauth_token_provider"], ClientCredentialsTokens)
    assert "s3cret" not in repr(security)
    assert security.environment()["STOCKSYNC_OAUTH_CLIENT_SECRET"] == "client-s3cret"  # for a child process only


@pytest.mark.parametrize(("env", "message"), [
    ({"SECURITY_PROTOCOL": "SASL_SSL"}, "STOCKSYNC_SECURITY_PROTOCOL=SASL_SSL needs STOCKSYNC_SASL_USERNAME"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_USERNAME": "u", "SASL_PASSWORD_FILE": "/nowhere/pw"},
     "STOCKSYNC_SASL_PASSWORD_FILE: no file at /nowhere/pw"),
    ({"SECURITY_PROTOCOL": "SSL", "SSL_CERT_FILE": __file__}, "STOCKSYNC_SSL_CERT_FILE and STOCKSYNC_SSL_KEY_FILE go"),
    ({"SSL_CA_FILE": __file__}, "TLS files are set but STOCKSYNC_SECURITY_PROTOCOL is PLAINTEXT"),
    ({"SECURITY_PROTOCOL": "SASL_TLS"}, "STOCKSYNC_SECURITY_PROTOCOL: Input should be"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "OAUTHBEARER", "OAUTH_CLIENT_ID": "c"},
     "STOCKSYNC_SASL_MECHANISM=OAUTHBEARER needs STOCKSYNC_OAUTH_TOKEN_URL"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "OAUTHBEARER", "OAUTH_TOKEN_URL": "idp/token"},
     "STOCKSYNC_OAUTH_TOKEN_URL: String should match pattern"),
])
def test_a_wrong_security_setting_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                        message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"STOCKSYNC_{name}", value)
    with pytest.raises(ConfigError) as refused:
        load_settings().kafka_security()
    assert str(refused.value).startswith(message)


def test_a_channel_client_reads_its_cluster_from_the_settings_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.channel import ChannelClient

    for variable in ("STOCKSYNC_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ConfigError, match="no Kafka to talk to: set STOCKSYNC_BOOTSTRAP_SERVERS"):
        ChannelClient("web", settings=load_settings())


def test_librdkafka_settings_pass_through_to_every_client_and_ours_are_refused(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "STOCKSYNC_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    # librdkafka itself judges what is passed through: an unknown property is its error, in one line.
    result = run_cli("topics", "create", env={**env, "STOCKSYNC_LIBRDKAFKA": '{"no.such.property": "x"}'})
    assert result.returncode == 2 and "no.such.property" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    result = run_cli("topics", "create", env={**env, "STOCKSYNC_LIBRDKAFKA": '{"acks": "1", "client.rack": "a"}'})
    assert result.returncode == 2
    assert result.stderr == ("stocksync: error: librdkafka settings ['acks']: stocksync sets these itself (its "
                             "guarantees or its own STOCKSYNC_ settings); they cannot be passed through\n")


def test_librdkafka_settings_come_from_the_environment_and_a_client_refuses_ours(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.channel import ChannelClient

    monkeypatch.setenv("STOCKSYNC_LIBRDKAFKA", '{"client.rack": "eu-1a", "enable.ssl.certificate.verification": false}')
    connection = load_settings().kafka_connection("127.0.0.1:9")
    assert dict(connection.librdkafka) == {"client.rack": "eu-1a", "enable.ssl.certificate.verification": "false"}
    assert "eu-1a" not in repr(connection)  # what is passed through may hold secrets
    with pytest.raises(ConfigError, match="transactional.id"):  # refused before anything connects
        ChannelClient("web", "127.0.0.1:9", kafka_config={"transactional.id": "mine"})


def test_passed_through_settings_reach_aiokafka_where_it_knows_them_and_secrets_come_from_a_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from streams.kafka.aio import librdkafka_only, passed_to_aiokafka

    secrets = tmp_path / "kafka.json"
    secrets.write_text('{"sasl.oauthbearer.client.secret": "from-a-file", "request.timeout.ms": 45000}')
    monkeypatch.setenv("STOCKSYNC_LIBRDKAFKA", '{"client.rack": "eu-west-1a", "socket.keepalive.enable": true}')
    monkeypatch.setenv("STOCKSYNC_LIBRDKAFKA_FILE", str(secrets))
    connection = load_settings().kafka_connection("kafka:9092")
    assert dict(connection.librdkafka) == {"client.rack": "eu-west-1a", "socket.keepalive.enable": "true",
                                           "sasl.oauthbearer.client.secret": "from-a-file",
                                           "request.timeout.ms": "45000"}
    assert passed_to_aiokafka(connection.librdkafka) == {"client_rack": "eu-west-1a", "request_timeout_ms": 45000}
    assert sorted(librdkafka_only(connection.librdkafka)) == ["sasl.oauthbearer.client.secret",
                                                              "socket.keepalive.enable"]
    assert "from-a-file" not in repr(connection)

    monkeypatch.setenv("STOCKSYNC_LIBRDKAFKA", '{"request.timeout.ms": 1000}')
    with pytest.raises(ConfigError, match=r"both set \['request.timeout.ms'\]"):
        load_settings().kafka_connection("kafka:9092")
    secrets.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="STOCKSYNC_LIBRDKAFKA_FILE: .* must hold one JSON object"):
        load_settings().kafka_connection("kafka:9092")
    monkeypatch.delenv("STOCKSYNC_LIBRDKAFKA_FILE")
    monkeypatch.setenv("STOCKSYNC_LIBRDKAFKA", '{"request.timeout.ms": "soon"}')
    with pytest.raises(ConfigError, match="request.timeout.ms='soon': a number is expected"):
        passed_to_aiokafka(load_settings().kafka_connection("kafka:9092").librdkafka)
