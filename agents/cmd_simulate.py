"""Generate a realistic, seeded stream of product events and survey answers.

Users sign up, walk the onboarding funnel, hold sessions (page views, impressions, clicks,
features, social interactions), buy and return, open and resolve tickets, answer CSAT/NPS/CES
surveys, and their customers subscribe and cancel; some go dormant. A fraction of the records is
bad on purpose (each reject reason, plus duplicates), and a few valid events carry a key other
than their user_id. Records are written as kcat-style JSON Lines (`engagement replay` reads them),
with record timestamps spaced by --rate from --start (default: now - --duration, so the history
is backfilled up to now). The same --seed gives the same file. A summary goes to stderr, with the
--as-of that covers the whole stream.

examples:
  engagement simulate --out events.jsonl                       # 1,000 users, 1 day, 10 records/s
  engagement simulate --users 20000 --rate 50 --duration 40d --out big.jsonl
  engagement simulate --start 2026-11-01T00:00:00Z --duration 7d --seed 3 --out week.jsonl
  engagement simulate --start 2026-11-20T08:00:00Z --duration 2h --out - |
      engagement replay --as-of 2026-11-20T10:00:00Z -
  engagement simulate --partitions 8 --config engagement.toml --out events.jsonl

Writing straight to Kafka (--bootstrap) comes with the live pipeline; until then use --out.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import IO

from agents.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from streams.config import Config
from streams.errors import AsOfError, ConfigError
from streams.simulate import REJECT_REASONS, SimConfig, Simulator, envelope_line
from streams.timeutil import MS, format_instant, parse_as_of
from streams.topics import DEFAULT_INPUT_PARTITIONS

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
        help="the first record timestamp: RFC 3339 or epoch ms (default: now - duration)",
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
        help="partitions of the input topics: a record goes to Kafka's default partition of "
        f"its key (default: {DEFAULT_INPUT_PARTITIONS})",
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
        help="produce to Kafka (comes with the live pipeline; not available yet)",
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


def run(args: argparse.Namespace) -> int:
    if args.bootstrap is not None:
        _err(
            "writing to Kafka (--bootstrap) comes with the live pipeline and is not available "
            "yet; write a file with --out FILE.jsonl (or --out - for stdout)"
        )
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
        start_ms = int(time.time() * 1000) - duration_ms
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

    to_stdout = args.out == "-"
    try:
        out: IO[bytes] = sys.stdout.buffer if to_stdout else open(args.out, "wb")  # noqa: SIM115
    except OSError as exc:
        _err(f"cannot write {args.out}: {exc}")
        return EXIT_FAILURE
    total = sim_config.record_count
    progress = _Progress(total, args.progress, sys.stderr)
    done = 0
    try:
        chunk: list[bytes] = []
        for rec in sim:
            chunk.append(envelope_line(rec))
            if len(chunk) == 8192:
                out.write(b"".join(chunk))
                chunk.clear()
                done += 8192
                progress.update(done)
        out.write(b"".join(chunk))
        done += len(chunk)
        out.flush()
    except OSError as exc:
        _err(f"cannot write {args.out}: {exc}")
        return EXIT_FAILURE
    finally:
        if not to_stdout:
            out.close()
    progress.update(done, final=True)
    _summary(sim, sim_config, args.out)
    return EXIT_OK


def _summary(sim: Simulator, cfg: SimConfig, out: str) -> None:
    c = sim.counts
    rejects = ", ".join(f"{r} {c[r]:,}" for r in REJECT_REASONS)
    last_ms = cfg.start_ms + (int((c["records"] - 1) * 1000.0 / cfg.rate) if c["records"] else 0)
    where = "stdout" if out == "-" else out
    print(
        f"simulate: {c['records']:,} records to {where} (product-events {c['product-events']:,}, "
        f"survey-answers {c['survey-answers']:,}); rejects on purpose: {rejects}; "
        f"duplicates {c['duplicate']:,}; wrongly keyed {c['misrouted']:,}\n"
        f"simulate: record time {format_instant(cfg.start_ms * MS)} .. "
        f"{format_instant(last_ms * MS)}; replay with --as-of {format_instant(last_ms * MS)}",
        file=sys.stderr,
    )
