"""The producer client's settings (engagement_cli/producer.py) without a broker; its behaviour against
Kafka is tested in tests/integration/test_producers.py."""

from __future__ import annotations

import pytest

from engagement_cli.cli import main
from engagement_cli.producer import DELIVERY_TIMEOUT_MS, Producer, producer_settings
from streams.errors import ConfigError


def test_every_producer_is_idempotent_and_waits_for_all_replicas() -> None:
    kw = producer_settings("k:9092", env={})
    assert kw["acks"] == "all" and kw["enable_idempotence"] is True
    assert kw["bootstrap_servers"] == "k:9092"
    assert kw["linger_ms"] > 0  # batching
    # a batch is retried for 2 minutes: a broker restart does not lose records
    assert kw["request_timeout_ms"] == DELIVERY_TIMEOUT_MS == 120_000
    assert 0 < kw["retry_backoff_ms"] <= 1000


def test_security_settings_reach_the_producer() -> None:
    env = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_USERNAME": "svc",
        "KAFKA_SASL_PASSWORD": "secret",
    }
    kw = producer_settings("k:9092", env=env)
    assert kw["security_protocol"] == "SASL_PLAINTEXT"
    assert kw["sasl_plain_username"] == "svc"


def test_bad_security_settings_fail_before_connecting() -> None:
    with pytest.raises(ConfigError):
        Producer("k:9092", env={"KAFKA_SECURITY_PROTOCOL": "BOGUS"})


def test_emit_exits_3_on_bad_security_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "BOGUS")
    assert main(["emit", "signup", "--user", "u-1", "--bootstrap", "127.0.0.1:1"]) == 3
    assert "KAFKA_SECURITY_PROTOCOL" in capsys.readouterr().err
