"""Kafka and Redis connection security, from environment variables (docs/operations.md, "Security").

Kafka: TLS and SASL (SCRAM-SHA-512 by default) for every client of the project: the worker's
Faust app (`broker_credentials`), its aiokafka intake consumer and re-reading consumers, the
admin client (`engagement topics`, the worker's topic check), and the producers of
`engagement load` / `engagement simulate`.

    KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL
    KAFKA_SASL_MECHANISM      SCRAM-SHA-512 (default), SCRAM-SHA-256 or PLAIN
    KAFKA_SASL_USERNAME       required with SASL_*
    KAFKA_SASL_PASSWORD       required with SASL_* (or KAFKA_SASL_PASSWORD_FILE: read from a file)
    KAFKA_SSL_CAFILE          PEM bundle of the CAs to trust (default: the system's)
    KAFKA_SSL_CERTFILE        client certificate (PEM), for brokers that require one
    KAFKA_SSL_KEYFILE         its private key (PEM)
    KAFKA_SSL_CHECK_HOSTNAME  1 (default): the broker's certificate must name its host

Redis: TLS when REDIS_URL starts with `rediss://`, and ACL authentication:

    REDIS_USERNAME            ACL user (default: none, i.e. the `default` user)
    REDIS_PASSWORD            its password (or REDIS_PASSWORD_FILE); preferred over a password
                              inside REDIS_URL, which would show wherever the URL is printed
    REDIS_SSL_CAFILE          PEM bundle of the CAs to trust (rediss:// only)
    REDIS_SSL_CERTFILE        client certificate (PEM), when Redis requires one
    REDIS_SSL_KEYFILE         its private key (PEM)

Secrets are never part of a repr, a log line or an error message.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from streams.errors import ConfigError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")

KAFKA_ENV = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_PASSWORD_FILE",
    "KAFKA_SSL_CAFILE",
    "KAFKA_SSL_CERTFILE",
    "KAFKA_SSL_KEYFILE",
    "KAFKA_SSL_CHECK_HOSTNAME",
)
REDIS_ENV = (
    "REDIS_USERNAME",
    "REDIS_PASSWORD",
    "REDIS_PASSWORD_FILE",
    "REDIS_SSL_CAFILE",
    "REDIS_SSL_CERTFILE",
    "REDIS_SSL_KEYFILE",
)


def _get(env: Mapping[str, str], name: str) -> str | None:
    v = env.get(name, "").strip()
    return v or None


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """NAME, else the content of the file named by NAME_FILE (one trailing newline dropped)."""
    v = env.get(name, "")
    if v:
        return v
    path = _get(env, name + "_FILE")
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"{name}_FILE: cannot read {path} ({exc.strerror})") from None
    return text[:-1] if text.endswith("\n") else text


def _file(env: Mapping[str, str], name: str) -> str | None:
    path = _get(env, name)
    if path is not None and not os.path.isfile(path):
        raise ConfigError(f"{name}: {path} is not a file")
    return path


def _tls_context(
    cafile: str | None, certfile: str | None, keyfile: str | None, check_hostname: bool, what: str
) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = check_hostname
        if certfile is not None:
            ctx.load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{what}: cannot load the TLS files ({exc})") from None
    return ctx


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    check_hostname: bool = True

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        env = os.environ if env is None else env
        protocol = (_get(env, "KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
        if protocol not in PROTOCOLS:
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, got {protocol!r}"
            )
        mechanism = (_get(env, "KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512").upper()
        if mechanism not in MECHANISMS:
            raise ConfigError(
                f"KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}, got {mechanism!r}"
            )
        check = (_get(env, "KAFKA_SSL_CHECK_HOSTNAME") or "1").lower()
        if check not in ("1", "0", "true", "false", "yes", "no"):
            raise ConfigError(f"KAFKA_SSL_CHECK_HOSTNAME must be 1 or 0, got {check!r}")
        sec = cls(
            protocol=protocol,
            mechanism=mechanism,
            username=_get(env, "KAFKA_SASL_USERNAME"),
            password=_secret(env, "KAFKA_SASL_PASSWORD"),
            cafile=_file(env, "KAFKA_SSL_CAFILE"),
            certfile=_file(env, "KAFKA_SSL_CERTFILE"),
            keyfile=_file(env, "KAFKA_SSL_KEYFILE"),
            check_hostname=check in ("1", "true", "yes"),
        )
        if sec.sasl and (sec.username is None or sec.password is None):
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"
            )
        if sec.tls:
            sec.ssl_context()  # fail now, with the variable's name, on unreadable files
        return sec

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        return _tls_context(
            self.cafile, self.certfile, self.keyfile, self.check_hostname, "KAFKA_SSL_*"
        )

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of every aiokafka client (consumer, producer, admin)."""
        if self.protocol == "PLAINTEXT":
            return {}
        kw: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            kw["ssl_context"] = self.ssl_context()
        if self.sasl:
            kw.update(
                sasl_mechanism=self.mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return kw

    def faust_settings(self) -> dict[str, Any]:
        """Keyword arguments of faust.App: `broker_credentials` (and nothing for PLAINTEXT)."""
        if self.protocol == "PLAINTEXT":
            return {}
        import faust

        if self.sasl:
            return {
                "broker_credentials": faust.SASLCredentials(
                    username=self.username,
                    password=self.password,
                    mechanism=self.mechanism,
                    ssl_context=self.ssl_context(),
                )
            }
        return {"broker_credentials": faust.SSLCredentials(self.ssl_context())}


@dataclass(frozen=True)
class RedisSecurity:
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RedisSecurity:
        env = os.environ if env is None else env
        return cls(
            username=_get(env, "REDIS_USERNAME"),
            password=_secret(env, "REDIS_PASSWORD"),
            cafile=_file(env, "REDIS_SSL_CAFILE"),
            certfile=_file(env, "REDIS_SSL_CERTFILE"),
            keyfile=_file(env, "REDIS_SSL_KEYFILE"),
        )

    def client_kwargs(self, url: str) -> dict[str, Any]:
        """Keyword arguments of redis.Redis.from_url / redis.asyncio.from_url for `url`."""
        kw: dict[str, Any] = {}
        if self.username is not None:
            kw["username"] = self.username
        if self.password is not None:
            kw["password"] = self.password
        if urlsplit(url).scheme == "rediss":
            kw["ssl_cert_reqs"] = "required"
            kw["ssl_check_hostname"] = True
            if self.cafile is not None:
                kw["ssl_ca_certs"] = self.cafile
            if self.certfile is not None:
                kw["ssl_certfile"] = self.certfile
                kw["ssl_keyfile"] = self.keyfile
        return kw


def redact_url(url: str) -> str:
    """A URL without the password it may carry (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + host).geturl()


def kafka_kwargs(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """aiokafka keyword arguments from the environment (the CLI commands' producers, admin)."""
    return KafkaSecurity.from_env(env).aiokafka_kwargs()


def redis_kwargs(url: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    return RedisSecurity.from_env(env).client_kwargs(url)
