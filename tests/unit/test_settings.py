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
    assert s.commit_interval_ms == 200 and s.engine == "auto"
    assert Settings.load(env={"ENGAGEMENT_COMMIT_INTERVAL_MS": "50"}).commit_interval_ms == 50
    assert s.heap_trim_seconds == 10
    assert Settings.load(env={"ENGAGEMENT_HEAP_TRIM_SECONDS": "0"}).heap_trim_seconds == 0
    assert s.intake_linger_ms == 100
    assert Settings.load(env={"ENGAGEMENT_INTAKE_LINGER_MS": "0"}).intake_linger_ms == 0


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
        ({"ENGAGEMENT_COMMIT_INTERVAL_MS": "fast"}, "COMMIT_INTERVAL_MS.*integer"),
        ({"ENGAGEMENT_COMMIT_INTERVAL_MS": "5"}, "outside 10..60000"),
        ({"ENGAGEMENT_INTAKE_LINGER_MS": "soon"}, "INTAKE_LINGER_MS.*integer"),
        ({"ENGAGEMENT_INTAKE_LINGER_MS": "-1"}, "outside 0..5000"),
        ({"ENGAGEMENT_ENGINE": "rust"}, "ENGAGEMENT_ENGINE: engine must be auto, native or python"),
        ({"ENGAGEMENT_ROCKSDB_BLOCK_CACHE_MB": "lots"}, "BLOCK_CACHE_MB: must be an integer"),
        ({"ENGAGEMENT_ROCKSDB_WRITE_BUFFER_MB": "0"}, "WRITE_BUFFER_MB: 0 MiB is outside 1..4096"),
        ({"ENGAGEMENT_HEAP_TRIM_SECONDS": "-1"}, "HEAP_TRIM_SECONDS: -1 s is outside 0..3600"),
        ({"ENGAGEMENT_HEAP_TRIM_SECONDS": "often"}, "HEAP_TRIM_SECONDS: must be an integer"),
    ],
)
def test_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(env=env)


# ---- flags > environment > the TOML file's [worker] table > defaults --------------------------


def _toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "engagement.toml"
    path.write_text(text)
    return str(path)


def test_precedence_flags_over_environment_over_toml_over_defaults(tmp_path: Path) -> None:
    cfg = _toml(
        tmp_path,
        'timezone = "Europe/Paris"\n'
        "[worker]\n"
        'bootstrap = "toml:9092"\n'
        'redis_url = "redis://toml:6379/3"\n'
        "web_port = 7100\n"
        'app_id = "from-toml"\n'
        'topic_prefix = "toml."\n'
        "input_partitions = 4\n",
    )
    env = {
        "ENGAGEMENT_CONFIG": cfg,
        "REDIS_URL": "redis://env:6379/1",
        "ENGAGEMENT_WEB_PORT": "7200",
        "ENGAGEMENT_INPUT_PARTITIONS": "6",
    }
    s = Settings.load(env=env, overrides={"web_port": 7300, "bootstrap": None})
    assert s.web_port == 7300  # flag over environment and TOML
    assert s.redis_url == "redis://env:6379/1"  # environment over TOML
    assert s.partitions == 6  # environment over TOML, for topic settings too
    assert s.bootstrap == "toml:9092"  # TOML when neither flag nor environment
    assert s.app_id == "from-toml"
    assert s.topic("product-events") == "toml.product-events"
    assert s.data_dir == ".run/worker" and s.web_host == "127.0.0.1"  # defaults
    assert s.config.timezone == "Europe/Paris"  # the same file's metric configuration

    # without the environment, the TOML values; with neither, the defaults
    s2 = Settings.load(env={"ENGAGEMENT_CONFIG": cfg})
    assert (s2.redis_url, s2.web_port, s2.partitions) == ("redis://toml:6379/3", 7100, 4)
    s3 = Settings.load(env={})
    assert (s3.bootstrap, s3.redis_url, s3.web_port, s3.partitions) == (
        "127.0.0.1:9092",
        "redis://127.0.0.1:6379/0",
        6066,
        8,
    )


def test_the_config_flag_picks_the_toml_file(tmp_path: Path) -> None:
    a = _toml(tmp_path, '[worker]\nworker_id = "a"\n')
    b = tmp_path / "b.toml"
    b.write_text('[worker]\nworker_id = "b"\nclock = "2026-11-20T12:00:00Z"\n')
    s = Settings.load(env={"ENGAGEMENT_CONFIG": a}, overrides={"config_file": str(b)})
    assert s.worker_id == "b"
    assert s.clock == parse_as_of("2026-11-20T12:00:00Z")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[worker]\nweb_prot = 1\n", "unknown key.*worker.web_prot"),
        ("[worker]\nconfig_file = 'x.toml'\n", "unknown key.*worker.config_file"),
        ("[worker]\nweb_port = 'http'\n", "web port must be an integer"),
        ("[worker]\nweb_port = true\n", "worker.web_port must be a string or an integer"),
        ("[worker]\nclock = 'tomorrow'\n", "ENGAGEMENT_CLOCK"),
        ("[worker]\ninput_partitions = 0\n", "input partitions must be >= 1"),
        ("worker = 3\n", "worker must be a table"),
        ("[worker\n", "config file"),
    ],
)
def test_toml_errors(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(env={"ENGAGEMENT_CONFIG": _toml(tmp_path, toml)})


def test_cmd_worker_flags_reach_the_settings(tmp_path: Path) -> None:
    """`engagement worker --web-port ...` parses into the overrides Settings.load uses."""
    from engagement_cli.cli import build_parser

    cfg = _toml(tmp_path, "[worker]\nweb_port = 7100\nlog_level = 'warning'\n")
    args = build_parser("worker").parse_args(
        ["worker", "--web-port", "7300", "--config", cfg, "--data-dir", "/tmp/w"]
    )
    overrides = {k: getattr(args, k) for k in ("web_port", "config_file", "data_dir", "log_level")}
    s = Settings.load(env={"ENGAGEMENT_WEB_PORT": "7200"}, overrides=overrides)
    assert (s.web_port, s.data_dir, s.log_level) == (7300, "/tmp/w", "warning")


def test_rocksdb_memory_is_bounded_by_the_settings() -> None:
    mib = 1024 * 1024
    d = Settings.load(env={}).rocksdb_options
    assert d["block_cache_size"] == 8 * mib and d["write_buffer_size"] == 8 * mib
    assert d["max_write_buffer_number"] == 2
    s = Settings.load(
        env={"ENGAGEMENT_ROCKSDB_BLOCK_CACHE_MB": "3", "ENGAGEMENT_ROCKSDB_WRITE_BUFFER_MB": "5"}
    )
    assert s.rocksdb_options["block_cache_size"] == 3 * mib
    assert s.rocksdb_options["block_cache_compressed_size"] == 3 * mib
    assert s.rocksdb_options["write_buffer_size"] == 5 * mib
