"""Send a kcat-style JSON Lines file into Kafka, keys and record timestamps included.

The inverse of `engagement replay`, for backfills and tests: each line's payload becomes the
record value (its UTF-8 bytes), `key` the record key, `ts` the record timestamp. The target
topic is the line's topic with the configured prefix. Records go to the partition Kafka's
default partitioner picks for their key (so a user stays in one partition); `--keep-partitions`
uses each line's `partition` instead. Lines that are not valid envelopes are reported and
skipped. The producer (engagement_cli/producer.py, shared with `engagement emit`) is idempotent
(acks=all) and flushed before exit; a record Kafka cannot take (e.g. a broker restarting) is
retried for up to 2 minutes, and the command exits 1 if any record was not acknowledged. `--rate N` paces the sending to N records per second.

examples:
  engagement load events.jsonl
  engagement simulate --duration 1d --out - | engagement load -
  engagement load --prefix test-1. --keep-partitions backfill.jsonl
  engagement load --rate 500 events.jsonl        # a steady stream of 500 records/s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from agents.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK
from engagement_cli.cli import add_kafka_arguments

# DELIVERY_TIMEOUT_MS: how long a record may wait for Kafka (retried every retry_backoff_ms)
# before it is given up, long enough to ride out a broker restart (docs/operations.md).
from engagement_cli.producer import DELIVERY_TIMEOUT_MS
from streams.errors import ConfigError


def _rate(v: str) -> float:
    try:
        r = float(v)
    except ValueError:
        r = -1.0
    if not (r >= 0 and r < float("inf")):
        raise argparse.ArgumentTypeError(f"expected records per second >= 0, got {v!r}")
    return r


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "files", nargs="+", metavar="FILE.jsonl", help="kcat-style files ('-' for stdin)"
    )
    add_kafka_arguments(p)
    p.add_argument(
        "--keep-partitions", action="store_true", help="send each record to its line's partition"
    )
    p.add_argument(
        "--rate",
        type=_rate,
        default=0.0,
        metavar="N",
        help="send at most N records per second (default 0: as fast as Kafka takes them)",
    )


def _say(msg: str) -> None:
    print(f"engagement load: {msg}", file=sys.stderr, flush=True)


async def _load(args: argparse.Namespace) -> int:
    """The load, with what a broker outage and a signal need (agents/outage.py): reconnect
    backoff, quiet client logs and a status line while Kafka is unreachable; SIGTERM/SIGINT
    stop it at the next record, then what was sent is flushed within
    ENGAGEMENT_STOP_TIMEOUT_SECONDS (130 when all of it was acknowledged, else 1)."""
    from agents import outage
    from engagement_cli.producer import Producer

    try:
        osettings = outage.OutageSettings.from_env()
        producer = Producer(
            args.bootstrap, client_id="engagement-load", delivery_timeout_ms=DELIVERY_TIMEOUT_MS
        )
    except ConfigError as exc:  # bad security settings
        print(f"engagement load: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    outage.install_backoff(osettings.retry_seconds)
    outage.quiet_handlers()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stop = outage.SignalStop(osettings.stop_timeout_seconds, _say)
    stop.install(loop, task)
    status = asyncio.ensure_future(
        outage.status_lines(
            args.bootstrap,
            _say,
            extra=lambda: f"{producer.sent - producer.acked - producer.failed:,} records waiting",
        )
    )
    try:
        return await _load_all(args, producer, stop)
    except asyncio.CancelledError:
        if stop.signum is None:
            raise
        waiting = producer.sent - producer.acked - producer.failed
        why = "a second signal" if stop.forced else f"{osettings.stop_timeout_seconds:g} s"
        _say(
            f"stopped by {stop.name}: {waiting:,} of {producer.sent:,} records sent were not "
            f"acknowledged by Kafka at {args.bootstrap} within {why}; they may be missing "
            "from Kafka (load them again: a record loaded twice is counted once); exit 1"
        )
        return EXIT_FAILURE
    finally:
        status.cancel()
        stop.uninstall(loop)


async def _load_all(args: argparse.Namespace, producer: Any, stop: Any) -> int:
    from engagement_cli.producer import ProducerError

    try:
        await producer.start()
    except ProducerError as exc:
        print(f"engagement load: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    skipped = 0
    start = time.monotonic()
    error: BaseException | None = None
    try:
        for name in args.files:
            try:
                fh = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
            except OSError as exc:
                print(f"engagement load: cannot read {name}: {exc}", file=sys.stderr)
                return EXIT_INPUT
            with fh:
                for n, raw in enumerate(fh, 1):
                    if stop.signum is not None:
                        break
                    try:
                        env = json.loads(raw)
                        topic = args.prefix + env["topic"]
                        ts = int(env["ts"])
                        payload = env["payload"]
                        key = env.get("key")
                    except (ValueError, KeyError, TypeError):
                        if raw.strip():
                            skipped += 1
                            print(
                                f"engagement load: {name}:{n}: not a valid envelope, skipped",
                                file=sys.stderr,
                            )
                        continue
                    value = None if payload is None else payload.encode("utf-8", "surrogatepass")
                    kb = None if key is None else key.encode("utf-8", "surrogatepass")
                    partition = None  # the key's partition (Kafka's default partitioner)
                    if args.keep_partitions and env.get("partition") is not None:
                        partition = int(env["partition"])
                    if args.rate > 0:
                        ahead = start + producer.sent / args.rate - time.monotonic()
                        if ahead > 0:
                            await asyncio.sleep(ahead)
                    try:
                        await producer.send_raw(topic, value, kb, ts, partition)
                    except ProducerError as exc:  # a missing topic, a buffer full too long
                        error = exc
                        break
                    if producer.sent % 50_000 == 0:
                        rate = producer.sent / max(time.monotonic() - start, 1e-9)
                        print(f"load: {producer.sent:,} records, {rate:,.0f}/s", file=sys.stderr)
            if error is not None or stop.signum is not None:
                break
    finally:
        task = asyncio.current_task()
        if task is None or not task.cancelling():  # cancelled: a stop's deadline, no flush
            await producer.stop()  # flushes, waits for what is still pending
    sent = producer.sent
    error = error or producer.error
    if error is not None or producer.acked < sent:
        print(
            f"engagement load: delivery to Kafka at {args.bootstrap} failed after "
            f"{producer.acked:,} of {sent:,} records: {error}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if stop.signum is not None:
        _say(
            f"stopped by {stop.name} after {sent:,} records, every one acknowledged "
            f"({skipped} lines skipped); exit {EXIT_INTERRUPTED}"
        )
        return EXIT_INTERRUPTED
    print(f"load: sent {sent:,} records ({skipped} lines skipped)", file=sys.stderr)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_load(args))
