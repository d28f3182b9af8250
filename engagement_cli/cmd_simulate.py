"""Generate a realistic, seeded stream of product events and survey answers, to a file or Kafka.

Users sign up, walk the onboarding funnel, hold sessions (page views, impressions, clicks,
features, social interactions), buy and return, open and resolve tickets, answer CSAT/NPS/CES
surveys, and their customers subscribe and cancel; some go dormant. A fraction of the records is
bad on purpose (each reject reason, plus duplicates), and a few valid events carry a key other
than their user_id. Record timestamps are spaced by --rate from --start. The same --seed gives
the same records. A summary goes to stderr, with the --as-of that covers the whole stream.

Where: --out writes kcat-style JSON Lines (`engagement replay` reads them). --bootstrap
HOST:PORT (or --kafka: $KAFKA_BOOTSTRAP, else 127.0.0.1:9092) produces to Kafka: each record
goes to the prefixed topic (--prefix, default $ENGAGEMENT_TOPIC_PREFIX) with its key, its value
bytes and its record timestamp, in the partition Kafka's default partitioner picks for the key
among the topic's partitions (a null key: the producer picks). The producer is idempotent
(acks=all), batches and retries each record for up to 2 minutes (a broker restart is ridden
out); the topics must exist (`engagement topics`, `make stack-up`).

When: by default records go out as fast as they are made, a backfill: --start defaults to
now - --duration, so the history ends now. With --live (--real-time) each record goes out when
the wall clock reaches its timestamp and --start defaults to now (a --start in the past catches
up first, then paces): `--live --rate 200 --duration 1h` streams 200 records/s for an hour.

SIGTERM or Ctrl-C stops it: what was made is flushed (sent, or written), then it exits 0 on
SIGTERM and 130 on Ctrl-C; a second signal aborts without flushing (130). To Kafka, the flush
waits at most ENGAGEMENT_STOP_TIMEOUT_SECONDS (12): then it exits 1, saying that records not
yet acknowledged may be lost. While the broker is unreachable it retries every
ENGAGEMENT_KAFKA_RETRY_SECONDS (5) at most, and says so in one line every 10 s.

examples:
  engagement simulate --out events.jsonl                       # 1,000 users, 1 day, 10 records/s
  engagement simulate --users 20000 --rate 50 --duration 40d --out big.jsonl
  engagement simulate --start 2026-11-01T00:00:00Z --duration 7d --seed 3 --out week.jsonl
  engagement simulate --start 2026-11-20T08:00:00Z --duration 2h --out - |
      engagement replay --as-of 2026-11-20T10:00:00Z -
  engagement simulate --partitions 8 --config engagement.toml --out events.jsonl
  engagement simulate --kafka                                  # backfill the last day into Kafka
  engagement simulate --bootstrap kafka:9092 --prefix test-1. --duration 7d --rate 50
  engagement simulate --kafka --live --rate 50 --duration 24h  # a live demo generator
  engagement simulate --kafka --live --start 2026-11-20T00:00:00Z --duration 2d
      # catch up since midnight as fast as possible, then 10 records/s in real time
  engagement simulate --live --rate 5 --duration 10m --out -   # JSON Lines in real time

environment:
  KAFKA_BOOTSTRAP           the broker --kafka uses (default 127.0.0.1:9092)
  ENGAGEMENT_TOPIC_PREFIX   default for --prefix (empty)
  ENGAGEMENT_CONFIG         default for --config
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import IO, Any

from agents.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from streams.config import Config
from streams.errors import AsOfError, ConfigError
from streams.simulate import (
    PRODUCT_TOPIC,
    REJECT_REASONS,
    SURVEY_TOPIC,
    SimConfig,
    Simulator,
    envelope_line,
    kafka_partition,
    value_bytes,
)
from streams.timeutil import MS, format_instant, parse_as_of
from streams.topics import DEFAULT_INPUT_PARTITIONS, ENV_PREFIX, TopicSettingsError, validate_prefix

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
ENV_BOOTSTRAP = "KAFKA_BOOTSTRAP"
# How long to wait for the broker to answer at start-up (a refused connection fails at once).
CONNECT_TIMEOUT_S = 20.0

_DURATION_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?[wdhms])+", re.ASCII)


def parse_duration(value: str) -> float:
    """Seconds in a duration such as `90s`, `15m`, `1h`, `7d`, `40d`, `1d12h`, `2w` (or a plain
    number of seconds)."""
    v = value.strip().lower()
    try:
        seconds = float(v)
    except ValueError:
        if not _DURATION_RE.fullmatch(v):
            raise argparse.ArgumentTypeError(
                f"{value!r} is not a duration (e.g. 90s, 15m, 1h, 7d, 1d12h)"
            ) from None
        seconds = sum(
            float(n) * _DURATION_UNITS[u] for n, u in re.findall(r"([0-9.]+)([wdhms])", v)
        )
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: a duration must be >= 0")
    return seconds


def _int_at_least(minimum: int) -> type[int]:
    def parse(v: str) -> int:
        try:
            n = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{v!r} is not an integer") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return n

    return parse  # type: ignore[return-value]


def _positive_float(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is not a number") from None
    if not 0 < x < float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return x


def _fraction(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is not a number") from None
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1 (e.g. 0.01 for 1%)")
    return x


def add_arguments(p: argparse.ArgumentParser) -> None:
    who = p.add_argument_group("what to simulate")
    who.add_argument(
        "--users", type=_int_at_least(1), default=1000, metavar="N", help="users (default: 1000)"
    )
    who.add_argument(
        "--accounts",
        type=_int_at_least(0),
        metavar="N",
        help="accounts; ~85%% of users belong to one, the rest to none (default: users / 5)",
    )
    who.add_argument(
        "--rate",
        type=_positive_float,
        default=10.0,
        metavar="R",
        help="records per second of record time (default: 10)",
    )
    who.add_argument(
        "--duration",
        type=parse_duration,
        default=86400.0,
        metavar="D",
        help="record time covered: 90s, 15m, 1h, 7d, 40d, 1d12h... (default: 1d)",
    )
    who.add_argument(
        "--start",
        metavar="T",
        help="the first record timestamp: RFC 3339 or epoch ms (default: now - duration; "
        "with --live: now)",
    )
    who.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    who.add_argument(
        "--bad-fraction",
        type=_fraction,
        default=0.01,
        metavar="F",
        help="fraction of rejected records (too_large, bad_json, schema, future, too_late) and "
        "duplicates (default: 0.01); a fifth as many valid events are keyed wrongly",
    )
    who.add_argument(
        "--misrouted-fraction",
        type=_fraction,
        metavar="F",
        help="fraction of valid events keyed by something other than their user_id "
        "(default: bad-fraction / 5)",
    )
    who.add_argument(
        "--partitions",
        type=_int_at_least(1),
        default=DEFAULT_INPUT_PARTITIONS,
        metavar="N",
        help="partitions of the input topics in the file: a record goes to Kafka's default "
        f"partition of its key (default: {DEFAULT_INPUT_PARTITIONS}); to Kafka, the topics' own "
        "partition counts are used",
    )
    who.add_argument(
        "--config",
        metavar="FILE.toml",
        default=os.environ.get("ENGAGEMENT_CONFIG"),
        help="metric configuration: late events stay within its allowed_lateness_hours and "
        "too_late records go beyond it (default: $ENGAGEMENT_CONFIG or built-in defaults)",
    )
    who.add_argument(
        "--max-records", type=_int_at_least(0), metavar="N", help="stop after N records"
    )
    where = p.add_argument_group("where to write (one of)")
    sink = where.add_mutually_exclusive_group(required=True)
    sink.add_argument(
        "--out", metavar="FILE.jsonl", help="write kcat-style JSON Lines ('-' for stdout)"
    )
    sink.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="produce to the Kafka cluster of these bootstrap servers (comma-separated)",
    )
    sink.add_argument(
        "--kafka",
        action="store_true",
        help=f"produce to Kafka at ${ENV_BOOTSTRAP} (default: {DEFAULT_BOOTSTRAP})",
    )
    where.add_argument(
        "--prefix",
        metavar="PREFIX",
        help=f"to Kafka: the topic name prefix (default: ${ENV_PREFIX}, else none)",
    )
    when = p.add_argument_group("when")
    when.add_argument(
        "--live",
        "--real-time",
        dest="live",
        action="store_true",
        help="send (or write) each record when the wall clock reaches its timestamp; --start "
        "defaults to now (default: as fast as possible, a backfill ending now)",
    )
    p.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="progress on stderr: a bar on a terminal, a line every 5 s otherwise (auto)",
    )


class _Progress:
    def __init__(self, total: int, mode: str, stream: IO[str]) -> None:
        if mode == "auto":
            mode = "bar" if stream.isatty() else "lines"
        self.mode = mode
        self.total = total
        self.stream = stream
        self.start = self.last = time.monotonic()

    def update(self, done: int, final: bool = False) -> None:
        if self.mode == "none":
            return
        now = time.monotonic()
        if not final and now - self.last < (0.2 if self.mode == "bar" else 5.0):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        pct = 100.0 * done / self.total if self.total else 100.0
        if self.mode == "bar":
            fill = int(30 * pct / 100)
            bar = f"[{'#' * fill}{'.' * (30 - fill)}]"
            msg = f"\r{bar} {pct:5.1f}% {done:,}/{self.total:,} records {rate:,.0f}/s"
            self.stream.write(msg + ("\n" if final else ""))
        else:
            self.stream.write(
                f"simulate: {done:,}/{self.total:,} records ({pct:.0f}%), {rate:,.0f} records/s\n"
            )
        self.stream.flush()


def _err(msg: str) -> None:
    print(f"engagement simulate: {msg}", file=sys.stderr)


class _Stop:
    """SIGTERM and SIGINT (Ctrl-C): the first asks the loop to stop after a flush, a second one
    aborts (KeyboardInterrupt in the file writer, cancelling the task in the producer)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._wake: Callable[[], Any] | None = None
        self._abort: Callable[[], Any] | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        name = signal.Signals(self.signum).name if self.signum else "?"
        return f"{name} (Ctrl-C)" if self.signum == signal.SIGINT else name

    @property
    def exit_code(self) -> int:
        return EXIT_INTERRUPTED if self.signum == signal.SIGINT else EXIT_OK

    def _on_signal(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            if self._wake is not None:
                self._wake()
        elif self._abort is not None:
            self._abort()
        else:
            raise KeyboardInterrupt

    # The file writer (synchronous).
    def install(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            self._on_signal(signum)

        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: the default handling stays
            self.uninstall()

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def sleep(self, seconds: float) -> None:
        """Sleep, but return within 0.2 s of a stop request."""
        deadline = time.monotonic() + seconds
        while self.signum is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.2))

    # The producer (asyncio).
    def install_async(
        self, loop: asyncio.AbstractEventLoop, wake: Callable[[], Any], abort: Callable[[], Any]
    ) -> None:
        self._wake, self._abort = wake, abort
        try:
            for sig in self.SIGNALS:
                loop.add_signal_handler(sig, self._on_signal, sig)
                self._previous[sig] = None
        except (ValueError, RuntimeError):  # not the main thread
            self.uninstall_async(loop)

    def uninstall_async(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in self._previous:
            loop.remove_signal_handler(sig)
        self._previous.clear()
        self._wake = self._abort = None


class _Tally:
    """What went out: records per topic, first and last record timestamps."""

    def __init__(self) -> None:
        self.records = 0
        self.by_topic = dict.fromkeys((PRODUCT_TOPIC, SURVEY_TOPIC), 0)
        self.first_ms: int | None = None
        self.last_ms: int | None = None

    def add(self, topic: str, ts: int) -> None:
        self.records += 1
        self.by_topic[topic] += 1
        if self.first_ms is None:
            self.first_ms = ts
        self.last_ms = ts


def run(args: argparse.Namespace) -> int:
    bootstrap: str | None = args.bootstrap
    if args.kafka:
        bootstrap = os.environ.get(ENV_BOOTSTRAP) or DEFAULT_BOOTSTRAP
    if bootstrap is None and args.prefix is not None:
        _err("--prefix names Kafka topics: use it with --bootstrap HOST:PORT or --kafka")
        return EXIT_USAGE
    prefix = ""
    if bootstrap is not None:
        if not bootstrap.strip():
            _err("--bootstrap needs HOST:PORT (e.g. 127.0.0.1:9092)")
            return EXIT_USAGE
        prefix = args.prefix if args.prefix is not None else os.environ.get(ENV_PREFIX, "")
        try:
            validate_prefix(prefix)
        except TopicSettingsError as exc:
            _err(str(exc))
            return EXIT_USAGE
    try:
        config = Config.from_toml_file(args.config) if args.config else Config()
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_CONFIG
    if config.allowed_lateness_hours < 1:
        _err("the simulator needs allowed_lateness_hours >= 1 (late events need room)")
        return EXIT_CONFIG
    duration_ms = int(args.duration * 1000)
    if args.start is None:
        now_ms = int(time.time() * 1000)
        start_ms = now_ms if args.live else now_ms - duration_ms
    else:
        try:
            start_ms = parse_as_of(args.start) // MS
        except AsOfError as exc:
            _err(str(exc).replace("as-of", "--start", 1))
            return EXIT_USAGE
    try:
        sim_config = SimConfig(
            start_ms=start_ms,
            duration_s=args.duration,
            users=args.users,
            accounts=args.accounts,
            rate=args.rate,
            seed=args.seed,
            partitions=args.partitions,
            bad_fraction=args.bad_fraction,
            misrouted_fraction=args.misrouted_fraction,
            allowed_lateness_hours=config.allowed_lateness_hours,
            max_records=args.max_records,
        )
        sim = Simulator(sim_config)
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    progress = _Progress(sim_config.record_count, args.progress, sys.stderr)
    if bootstrap is None:
        return _write_file(sim, args.out, args.live, progress)
    return asyncio.run(_produce(sim, bootstrap, prefix, args.live, progress))


def _write_file(sim: Simulator, path: str, live: bool, progress: _Progress) -> int:
    to_stdout = path == "-"
    try:
        out: IO[bytes] = sys.stdout.buffer if to_stdout else open(path, "wb")  # noqa: SIM115
    except OSError as exc:
        _err(f"cannot write {path}: {exc}")
        return EXIT_FAILURE
    stop = _Stop()
    stop.install()
    tally = _Tally()
    try:
        chunk: list[bytes] = []
        for rec in sim:
            if live:
                delay = rec["ts"] / 1000 - time.time()
                if delay > 0:
                    if chunk:
                        out.write(b"".join(chunk))
                        chunk.clear()
                    out.flush()
                    progress.update(tally.records)
                    stop.sleep(delay)
            if stop.requested:
                break
            chunk.append(envelope_line(rec))
            tally.add(rec["topic"], rec["ts"])
            if len(chunk) == 8192:
                out.write(b"".join(chunk))
                chunk.clear()
                progress.update(tally.records)
        out.write(b"".join(chunk))
        out.flush()
    except OSError as exc:
        _err(f"cannot write {path}: {exc}")
        return EXIT_FAILURE
    finally:
        stop.uninstall()
        if not to_stdout:
            out.close()
    progress.update(tally.records, final=True)
    names = {t: t for t in tally.by_topic}
    _summary(sim, tally, "stdout" if to_stdout else path, names, stop)
    return stop.exit_code


class _Acks:
    """The done-callback of every send: counts acknowledged records, keeps the first error."""

    __slots__ = ("count", "error")

    def __init__(self) -> None:
        self.count = 0
        self.error: BaseException | None = None

    def __call__(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self.count += 1
        elif self.error is None:
            self.error = exc


def _unreachable(bootstrap: str, why: object) -> None:
    _err(
        f"cannot reach Kafka at {bootstrap} ({why}); start the local stack with "
        "`make stack-up`, or pass the broker's address with --bootstrap HOST:PORT"
    )


async def _produce(
    sim: Simulator, bootstrap: str, prefix: str, live: bool, progress: _Progress
) -> int:
    from agents import outage

    # while the broker is gone: reconnect backoff, quiet client logs, a status line; a stop
    # flushes within ENGAGEMENT_STOP_TIMEOUT_SECONDS (agents/outage.py)
    try:
        osettings = outage.OutageSettings.from_env()
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_CONFIG
    outage.install_backoff(osettings.retry_seconds)
    outage.quiet_handlers()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    wake = asyncio.Event()
    stop = _Stop()
    deadline = outage.Deadline(osettings.stop_timeout_seconds, _err)

    def first_signal() -> None:
        wake.set()
        deadline.arm(loop, task)

    stop.install_async(loop, first_signal, task.cancel)
    status = asyncio.ensure_future(outage.status_lines(bootstrap, _err))
    try:
        return await _produce_to(sim, bootstrap, prefix, live, progress, stop, wake)
    except asyncio.CancelledError:
        if not stop.requested:
            raise
        if deadline.expired:
            _err(
                f"stopped by {stop.name}: Kafka at {bootstrap} did not acknowledge every record "
                f"within {osettings.stop_timeout_seconds:g} s ({outage.ENV_STOP}); records not "
                "yet acknowledged may be lost; exit 1"
            )
            return EXIT_FAILURE
        _err("aborted: records not yet acknowledged by Kafka may be lost")
        return EXIT_INTERRUPTED
    finally:
        status.cancel()
        stop.uninstall_async(loop)


async def _produce_to(
    sim: Simulator,
    bootstrap: str,
    prefix: str,
    live: bool,
    progress: _Progress,
    stop: _Stop,
    wake: asyncio.Event,
) -> int:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from agents import admin

    # aiokafka logs every failed connection attempt at start-up; our own error says it once.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    if not logging.getLogger().handlers:
        kafka_log.setLevel(logging.CRITICAL)
    from agents.security import kafka_kwargs

    try:
        security = kafka_kwargs()
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_CONFIG
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="engagement-simulate",
        **security,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=2 * 1024 * 1024,
        # A batch is retried (every retry_backoff_ms) until it is request_timeout_ms old: 2
        # minutes ride out a broker restart (docs/operations.md, "Faults we test").
        request_timeout_ms=120_000,
        retry_backoff_ms=200,
    )
    try:
        await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_S)
    except (KafkaError, OSError, TimeoutError) as exc:
        await producer.stop()
        kafka_log.setLevel(level)
        _unreachable(bootstrap, str(exc) or type(exc).__name__)
        return EXIT_FAILURE
    aborted = False
    try:
        names = {t: prefix + t for t in (PRODUCT_TOPIC, SURVEY_TOPIC)}
        try:
            client = await admin.connect(bootstrap, timeout=CONNECT_TIMEOUT_S)
            try:
                counts = await admin.partition_counts(client, names.values())
            finally:
                await client.close()
        except (admin.AdminError, KafkaError) as exc:
            _unreachable(bootstrap, exc)
            return EXIT_FAILURE
        finally:
            kafka_log.setLevel(level)
        missing = [n for n in names.values() if n not in counts]
        if missing:
            create = "engagement topics" + (f" --prefix {prefix}" if prefix else "")
            _err(
                f"Kafka at {bootstrap} has no topic {' or '.join(missing)}: create the topics "
                f"with `{create} --bootstrap {bootstrap}` (`make stack-up` creates the "
                "unprefixed ones)"
            )
            return EXIT_FAILURE
        parts = {t: counts[n] for t, n in names.items()}
        acks = _Acks()
        tally = _Tally()
        send = producer.send
        error: BaseException | None = None
        try:
            for rec in sim:
                ts = rec["ts"]
                if live:
                    delay = ts / 1000 - time.time()
                    if delay > 0:
                        progress.update(acks.count)
                        if delay > 0.05:
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(wake.wait(), delay)
                        else:
                            await asyncio.sleep(delay)
                if stop.requested or acks.error is not None:
                    break
                topic = rec["topic"]
                key = rec["key"]
                if key is None:
                    kb = partition = None
                else:
                    kb = key.encode("utf-8", "surrogatepass")
                    partition = kafka_partition(kb, parts[topic])
                fut = await send(
                    names[topic],
                    value_bytes(rec["payload"]),
                    key=kb,
                    partition=partition,
                    timestamp_ms=ts,
                )
                fut.add_done_callback(acks)
                tally.add(topic, ts)
                if not tally.records & 1023:
                    progress.update(acks.count)
                    await asyncio.sleep(0)  # let the sender and the signal handlers run
            await producer.flush()
        except KafkaError as exc:  # e.g. the send buffer stayed full past the request timeout
            error = exc
    except asyncio.CancelledError:
        aborted = True
        raise
    finally:
        if not aborted:
            await producer.stop()  # waits for what is still pending
    await asyncio.sleep(0)  # the done-callbacks of the last sends
    error = error or acks.error
    if error is not None or acks.count < tally.records:
        _err(
            f"delivery to Kafka at {bootstrap} failed after {acks.count:,} of {tally.records:,} "
            f"records: {error!r}; is the broker up (`make stack-up`)?"
        )
        return EXIT_FAILURE
    progress.update(acks.count, final=True)
    _summary(sim, tally, f"Kafka at {bootstrap}", names, stop)
    return stop.exit_code


def _summary(sim: Simulator, tally: _Tally, where: str, names: dict[str, str], stop: _Stop) -> None:
    c = sim.counts
    rejects = ", ".join(f"{r} {c[r]:,}" for r in REJECT_REASONS)
    topics = ", ".join(f"{names[t]} {n:,}" for t, n in tally.by_topic.items())
    lines = [
        f"simulate: {tally.records:,} records to {where} ({topics}); rejects on purpose: "
        f"{rejects}; duplicates {c['duplicate']:,}; wrongly keyed {c['misrouted']:,}"
    ]
    if tally.first_ms is not None and tally.last_ms is not None:
        last = format_instant(tally.last_ms * MS)
        lines.append(
            f"simulate: record time {format_instant(tally.first_ms * MS)} .. {last}; "
            f"replay with --as-of {last}"
        )
    if stop.requested:
        lines.append(f"simulate: stopped early by {stop.name}, after flushing what was made")
    print("\n".join(lines), file=sys.stderr)
