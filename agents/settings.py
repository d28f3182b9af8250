"""Worker settings: environment variables (and flags) plus the metric configuration TOML.

Precedence: command-line flags > environment variables > the TOML file's `[worker]` table >
defaults. The TOML file itself is named by `--config` or ENGAGEMENT_CONFIG (so it cannot name
itself); its other keys are the metric configuration. Secrets and connection security stay in
the environment (agents/security.py). Every setting is documented in docs/operations.md.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from agents.security import KafkaSecurity, RedisSecurity
from streams.config import Config, read_toml
from streams.errors import ConfigError
from streams.timeutil import Instant, parse_as_of
from streams.topics import TopicSettings, TopicSettingsError

ENV = {
    "bootstrap": "KAFKA_BOOTSTRAP",
    "redis_url": "REDIS_URL",
    "data_dir": "ENGAGEMENT_DATA_DIR",
    "web_host": "ENGAGEMENT_WEB_HOST",
    "web_port": "ENGAGEMENT_WEB_PORT",
    "config_file": "ENGAGEMENT_CONFIG",
    "app_id": "ENGAGEMENT_APP_ID",
    "store": "ENGAGEMENT_STORE",
    "clock": "ENGAGEMENT_CLOCK",
    "worker_id": "ENGAGEMENT_WORKER_ID",
    "log_level": "ENGAGEMENT_LOG_LEVEL",
    "commit_interval_ms": "ENGAGEMENT_COMMIT_INTERVAL_MS",
    "intake_linger_ms": "ENGAGEMENT_INTAKE_LINGER_MS",
    "engine": "ENGAGEMENT_ENGINE",
    "rocksdb_block_cache_mb": "ENGAGEMENT_ROCKSDB_BLOCK_CACHE_MB",
    "rocksdb_write_buffer_mb": "ENGAGEMENT_ROCKSDB_WRITE_BUFFER_MB",
    "heap_trim_seconds": "ENGAGEMENT_HEAP_TRIM_SECONDS",
}
# bounds of the RocksDB memory settings (MiB per table partition)
ROCKSDB_MB_RANGE = (1, 4096)
# the integer settings with bounds: (what the error says, unit, lowest, highest)
INT_SETTINGS = {
    "commit_interval_ms": ("the commit interval must be an integer (ms)", "ms", 10, 60_000),
    "intake_linger_ms": ("the intake linger must be an integer (ms)", "ms", 0, 5_000),
    "rocksdb_block_cache_mb": ("must be an integer (MiB)", "MiB", *ROCKSDB_MB_RANGE),
    "rocksdb_write_buffer_mb": ("must be an integer (MiB)", "MiB", *ROCKSDB_MB_RANGE),
    "heap_trim_seconds": ("must be an integer (seconds; 0 turns it off)", "s", 0, 3_600),
}
# [worker] keys of the TOML file: the settings above (but the file itself), and the topic
# settings, read as if they were these environment variables.
TOML_TOPIC_KEYS = {
    "topic_prefix": "ENGAGEMENT_TOPIC_PREFIX",
    "input_partitions": "ENGAGEMENT_INPUT_PARTITIONS",
    "output_partitions": "ENGAGEMENT_OUTPUT_PARTITIONS",
    "replication_factor": "ENGAGEMENT_REPLICATION_FACTOR",
}
TOML_KEYS = tuple(k for k in ENV if k != "config_file") + tuple(TOML_TOPIC_KEYS)


def worker_table(path: str) -> dict[str, str]:
    """The `[worker]` table of a TOML file, as strings (like environment values)."""
    table = read_toml(path).get("worker", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: worker must be a table ([worker])")
    unknown = sorted(set(table) - set(TOML_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) worker.{', worker.'.join(unknown)}; "
            f"valid keys: {', '.join(TOML_KEYS)}"
        )
    out: dict[str, str] = {}
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ConfigError(f"{path}: worker.{key} must be a string or an integer")
        out[key] = str(value)
    return out


@dataclass(frozen=True)
class Settings:
    bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: str = ".run/worker"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    config_file: str | None = None
    app_id: str = "engagement"
    store: str = "rocksdb://"
    clock: Instant | None = None  # a pinned "now" (tests, demos of history, backfills)
    worker_id: str = ""
    log_level: str = "info"
    # how long a partition's state changes collect before they are persisted together (an
    # epoch, agents/epoch.py): repeated writes to an entity within it collapse into one.
    # Longer ones were measured (bench/RESULTS.md, 2026-12-05 20:32-21:18): 1 s drained a
    # little faster with 60,000 users; 500 ms and 1 s a quarter slower with 1.5M users
    commit_interval_ms: int = 200
    # how long the intake's fetch may wait for more records (up to 1 MiB) before it forwards
    # what came as micro-batches: bigger micro-batches at low rates cost less per record, but
    # each record may wait that long (bench/RESULTS.md, the live rows)
    intake_linger_ms: int = 100  # decision 60
    # the engine of the live partitions: the compiled core when it is installed ("auto"),
    # or "native" / "python" (both give the same results; streams/native_live.py)
    engine: str = "auto"
    # RocksDB's memory per table partition (the store holds one database per partition of
    # each of the two tables): its block cache, and each of its (at most 2) write buffers.
    # Faust's defaults are a 2 GiB cache and 3 x 64 MiB buffers per database; the state
    # itself lives in the engine, RocksDB is only its local copy (read at start-up).
    rocksdb_block_cache_mb: int = 8
    rocksdb_write_buffer_mb: int = 8
    # how often the worker gives the memory it freed back to the system (agents/heap.py:
    # glibc's malloc_trim); 0 never
    heap_trim_seconds: int = 10
    topics: TopicSettings = field(default_factory=TopicSettings)
    config: Config = field(default_factory=Config)
    # TLS/SASL of every Kafka client and TLS/ACL of Redis (agents/security.py; env only)
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    redis_security: RedisSecurity = field(default_factory=RedisSecurity)

    @property
    def rocksdb_options(self) -> dict[str, int]:
        """The options of each table's RocksDB databases (faust.stores.rocksdb.RocksDBOptions)."""
        mib = 1024 * 1024
        return {
            "block_cache_size": self.rocksdb_block_cache_mb * mib,
            "block_cache_compressed_size": self.rocksdb_block_cache_mb * mib,
            "write_buffer_size": self.rocksdb_write_buffer_mb * mib,
            "max_write_buffer_number": 2,
        }

    @property
    def partitions(self) -> int:
        return self.topics.input_partitions

    @property
    def web_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"

    def topic(self, base: str) -> str:
        return f"{self.topics.prefix}{base}"

    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None
    ) -> Settings:
        """Settings from `env` (default os.environ) and flag `overrides` (None values ignored)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        config_file = (overrides or {}).get("config_file") or env.get(ENV["config_file"], "")
        toml = worker_table(str(config_file).strip()) if str(config_file).strip() else {}
        for name, text in toml.items():  # the TOML file, below the environment
            if name in ENV:
                values[name] = text.strip()
        topic_env = {var: toml[k] for k, var in TOML_TOPIC_KEYS.items() if k in toml}
        topic_env.update({k: v for k, v in env.items() if v.strip()})
        for name, var in ENV.items():
            if env.get(var, "").strip():
                values[name] = env[var].strip()
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
        try:
            topics = TopicSettings.from_env(topic_env)
        except (TopicSettingsError, ValueError) as exc:
            raise ConfigError(str(exc)) from exc
        kw: dict[str, object] = {
            "topics": topics,
            "kafka_security": KafkaSecurity.from_env(env),
            "redis_security": RedisSecurity.from_env(env),
        }
        for name, value in values.items():
            if name == "web_port":
                try:
                    port = int(str(value))
                except ValueError:
                    raise ConfigError(f"web port must be an integer, got {value!r}") from None
                if not 0 <= port <= 65535:
                    raise ConfigError(f"web port {port} is out of range")
                kw[name] = port
            elif name in INT_SETTINGS:
                kw[name] = _bounded_int(name, value)
            elif name == "engine":
                engine = str(value).strip().lower()
                if engine not in ("auto", "native", "python"):
                    raise ConfigError(
                        f"{ENV[name]}: engine must be auto, native or python, got {value!r}"
                    )
                kw[name] = engine
            elif name == "clock":
                try:
                    kw[name] = parse_as_of(str(value))
                except ValueError as exc:
                    raise ConfigError(f"{ENV['clock']}/--clock: {exc}") from None
            else:
                kw[name] = str(value)
        config_file = kw.get("config_file")
        if isinstance(config_file, str):
            kw["config"] = Config.from_toml_file(config_file)
        if not kw.get("worker_id"):
            kw["worker_id"] = f"{socket.gethostname()}-{os.getpid()}"
        return cls(**kw)  # type: ignore[arg-type]


def _bounded_int(name: str, value: object) -> int:
    """An integer setting of INT_SETTINGS, or a ConfigError naming its variable."""
    what, unit, lo, hi = INT_SETTINGS[name]
    try:
        n = int(str(value))
    except ValueError:
        raise ConfigError(f"{ENV[name]}: {what}, got {value!r}") from None
    if not lo <= n <= hi:
        raise ConfigError(f"{ENV[name]}: {n} {unit} is outside {lo}..{hi}")
    return n
