"""Worker settings: flags > environment > defaults, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.settings import Settings
from streams.errors import ConfigError
from streams.timeutil import parse_as_of


def test_defaults() -> None:
    s = Settings.load(env={})
    assert (s.bootstrap, s.web_host, s.web_port, s.app_id) == (
        "127.0.0.1:9092",
        "127.0.0.1",
        6066,
        "engagement",
    )
    assert s.clock is None and s.partitions == 8 and s.topic("product-events") == "product-events"
    assert s.worker_id  # host-pid


def test_flags_override_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('timezone = "Europe/Paris"\n')
    env = {
        "KAFKA_BOOTSTRAP": "k:1",
        "ENGAGEMENT_WEB_PORT": "7000",
        "ENGAGEMENT_CLOCK": "2026-11-20T12:00:00Z",
        "ENGAGEMENT_TOPIC_PREFIX": "t1.",
        "ENGAGEMENT_CONFIG": str(cfg),
    }
    s = Settings.load(env=env, overrides={"web_port": 7001, "bootstrap": None})
    assert s.bootstrap == "k:1"  # None: the flag was not given
    assert s.web_port == 7001
    assert s.clock == parse_as_of("2026-11-20T12:00:00Z")
    assert s.topic("product-events") == "t1.product-events"
    assert s.config.timezone == "Europe/Paris"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ENGAGEMENT_WEB_PORT": "http"}, "web port"),
        ({"ENGAGEMENT_WEB_PORT": "70000"}, "out of range"),
        ({"ENGAGEMENT_CLOCK": "tomorrow"}, "ENGAGEMENT_CLOCK"),
        ({"ENGAGEMENT_CONFIG": "/nonexistent.toml"}, "does not exist"),
        ({"ENGAGEMENT_TOPIC_PREFIX": "bad prefix!"}, "prefix"),
    ],
)
def test_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(env=env)
