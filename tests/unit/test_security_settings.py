"""Security settings from the environment (agents/security.py): what each client receives, the
configuration errors, and secrets kept out of reprs and messages."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from agents.security import KafkaSecurity, RedisSecurity, redact_url
from agents.settings import Settings
from streams.errors import ConfigError

SECRET = "s3cr3t-Pa55word-for-tests"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real self-signed CA certificate (openssl), to load into an SSL context."""
    d = tmp_path_factory.mktemp("ca")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"), "-days", "1",
         "-subj", "/CN=test CA"],
        check=True, capture_output=True,
    )  # fmt: skip
    return d / "ca.pem"


def test_plaintext_by_default() -> None:
    sec = KafkaSecurity.from_env({})
    assert sec.protocol == "PLAINTEXT" and sec.aiokafka_kwargs() == {}
    assert sec.faust_settings() == {}
    assert RedisSecurity.from_env({}).client_kwargs("redis://127.0.0.1:6379/0") == {}


def test_sasl_ssl_for_aiokafka_and_faust(ca: Path) -> None:
    env = {
        "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "KAFKA_SASL_USERNAME": "engagement",
        "KAFKA_SASL_PASSWORD": SECRET,
        "KAFKA_SSL_CAFILE": str(ca),
    }
    sec = KafkaSecurity.from_env(env)
    kw = sec.aiokafka_kwargs()
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "engagement" and kw["sasl_plain_password"] == SECRET
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    creds = sec.faust_settings()["broker_credentials"]
    # what Faust hands to aiokafka for every consumer and producer it makes
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_password"] == SECRET and auth["ssl_context"] is not None
    # the password is in no repr (logs print settings and credentials)
    assert SECRET not in repr(sec) and SECRET not in repr(creds)
    assert SECRET not in repr(Settings.load(env=env))


def test_password_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text(SECRET + "\n")
    env = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_USERNAME": "u",
        "KAFKA_SASL_PASSWORD_FILE": str(f),
    }
    assert KafkaSecurity.from_env(env).password == SECRET
    assert RedisSecurity.from_env({"REDIS_PASSWORD_FILE": str(f)}).password == SECRET


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs KAFKA_SASL_USERNAME"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"},
            "KAFKA_SASL_PASSWORD",
        ),
        ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM must be one of"),
        (
            {"KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
            "KAFKA_SSL_CAFILE: /nonexistent/ca.pem is not a file",
        ),
        ({"KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"}, "KAFKA_SASL_PASSWORD_FILE: cannot read"),
        ({"KAFKA_SSL_CHECK_HOSTNAME": "maybe"}, "KAFKA_SSL_CHECK_HOSTNAME must be 1 or 0"),
        ({"REDIS_SSL_CAFILE": "/nonexistent/ca.pem"}, "REDIS_SSL_CAFILE"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(env=env)


def test_a_ca_file_that_is_no_certificate(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    env = {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(bad)}
    with pytest.raises(ConfigError, match="cannot load the TLS files"):
        KafkaSecurity.from_env(env)


def test_redis_tls_only_for_rediss_urls(ca: Path) -> None:
    sec = RedisSecurity.from_env(
        {"REDIS_USERNAME": "engagement", "REDIS_PASSWORD": SECRET, "REDIS_SSL_CAFILE": str(ca)}
    )
    tls = sec.client_kwargs("rediss://127.0.0.1:6380/0")
    assert tls["ssl_ca_certs"] == str(ca) and tls["ssl_check_hostname"] is True
    assert tls["ssl_cert_reqs"] == "required"
    assert tls["username"] == "engagement" and tls["password"] == SECRET
    plain = sec.client_kwargs("redis://127.0.0.1:6379/0")
    assert not any(k.startswith("ssl") for k in plain)  # a plain connection takes no TLS options
    assert SECRET not in repr(sec)
    # redis-py accepts them (building the pool checks the keyword arguments)
    import redis

    client = redis.Redis.from_url("rediss://127.0.0.1:6380/0", **tls)
    assert client.connection_pool.connection_kwargs["ssl_ca_certs"] == str(ca)


def test_redact_url() -> None:
    assert redact_url("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert redact_url("rediss://:pw@h/0") == "rediss://:***@h/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
