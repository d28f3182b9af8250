"""Run a live worker: consume the input topics, keep the metrics, serve /snapshot and /metrics.

Settings come from flags, then environment variables, then the `[worker]` table of the TOML
file (--config), then defaults (docs/operations.md):
KAFKA_BOOTSTRAP, REDIS_URL, ENGAGEMENT_DATA_DIR, ENGAGEMENT_WEB_HOST, ENGAGEMENT_WEB_PORT,
ENGAGEMENT_CONFIG (the metric TOML), ENGAGEMENT_TOPIC_PREFIX, ENGAGEMENT_INPUT_PARTITIONS,
ENGAGEMENT_APP_ID, ENGAGEMENT_STORE, ENGAGEMENT_CLOCK (pin "now"), ENGAGEMENT_WORKER_ID;
TLS/SASL to Kafka and TLS/ACL to Redis: KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*,
REDIS_USERNAME, REDIS_PASSWORD(_FILE), REDIS_SSL_* (docs/operations.md, "Security").

examples:
  engagement worker
  engagement worker --web-port 6067 --data-dir .run/worker-2
  engagement worker --clock 2026-11-20T12:00:00Z        # serve history as of a fixed instant
  curl -s 'http://127.0.0.1:6066/snapshot?as_of=2026-11-20T12:00:00Z'
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from agents.exits import EXIT_CONFIG, EXIT_FAILURE
from streams.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bootstrap", help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP; 127.0.0.1:9092)"
    )
    p.add_argument("--redis-url", help="Redis URL (env REDIS_URL; redis://127.0.0.1:6379/0)")
    p.add_argument(
        "--data-dir", help="RocksDB tables live here (env ENGAGEMENT_DATA_DIR; .run/worker)"
    )
    p.add_argument("--web-host", help="bind address of the HTTP endpoints (127.0.0.1)")
    p.add_argument("--web-port", type=int, help="HTTP port (env ENGAGEMENT_WEB_PORT; 6066)")
    p.add_argument(
        "--config", dest="config_file", help="metric configuration TOML (env ENGAGEMENT_CONFIG)"
    )
    p.add_argument("--clock", help="pin the worker's clock to this instant (env ENGAGEMENT_CLOCK)")
    p.add_argument("--worker-id", help="name in the worker registry (default host-pid)")
    p.add_argument("--log-level", default=None, help="debug, info (default), warning, error")


def run(args: argparse.Namespace) -> int:
    from agents.settings import Settings

    overrides = {
        k: getattr(args, k)
        for k in (
            "bootstrap",
            "redis_url",
            "data_dir",
            "web_host",
            "web_port",
            "config_file",
            "clock",
            "worker_id",
            "log_level",
        )
    }
    try:
        settings = Settings.load(overrides=overrides)
    except ConfigError as exc:
        print(f"engagement worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    import asyncio

    from agents import outage
    from agents.admin import AdminError, ensure_topics
    from agents.internal import internal_topic_specs
    from agents.worker import Worker
    from streams.topics import topic_specs

    def say(msg: str) -> None:
        print(f"engagement worker: {msg}", file=sys.stderr, flush=True)

    # while Kafka is unreachable: backoff, quiet logs, one line per start attempt (agents/outage.py)
    try:
        osettings = outage.OutageSettings.from_env()
    except ConfigError as exc:
        say(str(exc))
        return EXIT_CONFIG
    outage.install_backoff(osettings.retry_seconds)
    outage.quiet_handlers()
    try:
        asyncio.run(_wait_for_kafka(settings, osettings, say))
    except outage.KafkaUnreachable as exc:
        say(f"{exc}; exit {EXIT_FAILURE}")
        return EXIT_FAILURE
    except asyncio.CancelledError:
        say("stopped by a signal while waiting for Kafka (nothing was applied); exit 0")
        return 0

    # Create every topic before Faust starts: Faust declares its internal topics lazily, and a
    # consumer that subscribed before they existed would never be assigned their partitions.
    specs = (*topic_specs(settings.topics), *internal_topic_specs(settings))
    try:
        statuses = asyncio.run(ensure_topics(settings.bootstrap, specs))
    except AdminError as exc:
        print(f"engagement worker: {exc} (is the stack up? `make stack-up`)", file=sys.stderr)
        return EXIT_FAILURE
    bad = [st for st in statuses if not st.ok]
    if bad:
        for st in bad:
            print(f"engagement worker: {st.describe()}", file=sys.stderr)
        return EXIT_FAILURE

    # members of this worker's previous process (SIGKILLed?) leave the groups now, so its
    # partitions need not wait for their sessions to expire (agents/membership.py)
    from agents.membership import leave_previous

    removed = asyncio.run(
        leave_previous(
            settings.bootstrap, settings.data_dir, settings.kafka_security.aiokafka_kwargs()
        )
    )
    if removed:
        print(
            f"engagement worker: removed {removed} consumer group member(s) of this worker's "
            "previous process (its partitions move at once)",
            file=sys.stderr,
        )
    try:
        worker = Worker(settings)
    except ConfigError as exc:
        print(f"engagement worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    import gc

    from agents.worker import GC_THRESHOLDS

    gc.set_threshold(*GC_THRESHOLDS)
    worker.registry.register(outage.KafkaCollector())  # engagement_kafka_reachable ...
    fw = outage.make_worker_class()(worker.app, loglevel=settings.log_level, quiet=True)
    # SIGTERM/SIGINT: a graceful stop within ENGAGEMENT_STOP_TIMEOUT_SECONDS; exit 0 only when
    # everything applied was committed (agents/outage.py StopGuard)
    guard = outage.StopGuard(
        lambda: (
            outage.uncommitted((worker.users.epochs, worker.accounts.epochs)) + worker.unpersisted
        ),
        osettings.stop_timeout_seconds,
    )
    fw.guard, fw.bootstrap = guard, settings.bootstrap
    # The libraries' loggers at the chosen level themselves, not only the handlers: aiokafka logs
    # at debug on every send, and building records that a handler then drops costs CPU.
    level = logging.getLevelName(settings.log_level.upper())
    for name in ("aiokafka", "faust", "mode", "rocksdict"):
        logging.getLogger(name).setLevel(level if isinstance(level, int) else logging.INFO)
    try:
        fw.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    return guard.exit_code(code)


async def _wait_for_kafka(settings: Any, osettings: Any, say: Any) -> None:
    """Wait for Kafka (ENGAGEMENT_START_TIMEOUT_SECONDS), one line per attempt; a signal
    cancels the wait."""
    import asyncio

    from agents import outage

    task = asyncio.current_task()
    assert task is not None
    with outage.start_signals(asyncio.get_running_loop(), task):
        await outage.wait_for_kafka(
            settings.bootstrap,
            settings.kafka_security.aiokafka_kwargs(),
            osettings.start_timeout_seconds,
            osettings.retry_seconds,
            say,
        )
