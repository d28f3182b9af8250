"""Compute the metrics snapshot from kcat-style JSON Lines files, as of an instant.

Each line is one Kafka record as `kcat -C -J` prints it:
  {"topic": "product-events", "partition": 0, "offset": 17, "ts": 1795169100500,
   "key": "u-42", "payload": "{\\"event_id\\": ...}"}
Records are processed in file order (all of them, also those after --as-of); records of other
topics are skipped; invalid lines count as rejected (bad_json). The snapshot JSON (the keys of
docs/metrics.md) goes to stdout; progress goes to stderr.

examples:
  engagement replay --as-of 2026-11-20T12:00:00Z events.jsonl
  engagement replay --config engagement.toml --as-of 2026-11-20T12:00:00+01:00 a.jsonl b.jsonl
  kcat -C -J -e -t product-events | engagement replay --as-of 1795168800000 -
  engagement replay --as-of 2026-11-20T12:00:00Z --partitions 8 --rejects rejects.jsonl ev.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import IO, Any

from agents.exits import EXIT_CONFIG, EXIT_INPUT, EXIT_OK, EXIT_USAGE
from streams import native
from streams.config import Config
from streams.errors import AsOfError, ConfigError
from streams.replay import Replayer, gc_paused
from streams.timeutil import parse_as_of


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE.jsonl", help="replay files ('-' for stdin)")
    p.add_argument(
        "--as-of",
        required=True,
        metavar="T",
        help="the snapshot instant: RFC 3339 (2026-11-20T12:00:00Z) or epoch milliseconds",
    )
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        default=os.environ.get("ENGAGEMENT_CONFIG"),
        help="metric configuration (timezone, allowed_lateness_hours, ...); "
        "default: $ENGAGEMENT_CONFIG or built-in defaults",
    )
    p.add_argument(
        "--partitions",
        type=_positive_int,
        default=1,
        metavar="N",
        help="split records into N partitions by user (and customer) hash; "
        "the snapshot is the same for every N (default: 1)",
    )
    p.add_argument(
        "--rejects",
        metavar="FILE.jsonl",
        help="write each rejected record (reason, detail, origin, value) as a JSON line",
    )
    p.add_argument(
        "--engine",
        choices=native.ENGINES,
        default=os.environ.get("ENGAGEMENT_REPLAY_ENGINE", "auto"),
        help="the compiled core (native, built by `make install` from native/), the pure-Python "
        "engine (python), or native when it is installed (auto, the default; "
        "$ENGAGEMENT_REPLAY_ENGINE). Both give the same snapshot",
    )
    p.add_argument("--compact", action="store_true", help="print the snapshot on one line")
    p.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="progress on stderr: a bar on a terminal, a line every 5 s otherwise (auto)",
    )


def _positive_int(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


class Progress:
    def __init__(self, total: int, mode: str, stream: IO[str]) -> None:
        if mode == "auto":
            mode = "bar" if stream.isatty() else "lines"
        self.mode = mode
        self.total = total
        self.stream = stream
        self.start = self.last = time.monotonic()

    def update(self, done: int, lines: int, final: bool = False) -> None:
        if self.mode == "none":
            return
        now = time.monotonic()
        every = 0.2 if self.mode == "bar" else 5.0
        if not final and now - self.last < every:
            return
        self.last = now
        rate = lines / max(now - self.start, 1e-9)
        pct = 100.0 * done / self.total if self.total else 100.0
        if self.mode == "bar":
            width = 30
            fill = int(width * pct / 100)
            msg = f"\r[{'#' * fill}{'.' * (width - fill)}] {pct:5.1f}% {lines:,} records {rate:,.0f}/s"
            self.stream.write(msg + ("\n" if final else ""))
        else:
            self.stream.write(f"replay: {lines:,} records ({pct:.0f}%), {rate:,.0f} records/s\n")
        self.stream.flush()


def _feed_native(
    replayer: native.NativeReplayer, fh: IO[bytes], progress: Progress, done: int
) -> None:
    """One file through the compiled core, in 1 MiB chunks (each file ends its last line)."""
    stdin = fh is sys.stdin.buffer
    read = getattr(fh, "read1", fh.read) if stdin else fh.read
    while chunk := read(1 << 20):
        replayer.feed_bytes(chunk)
        progress.update(done if stdin else done + fh.tell(), replayer.lines)
    replayer.finish()


def counts_nothing(snap: dict[str, Any]) -> bool:
    """True when the snapshot accepted records but counts none of them in any window: every
    record's event time is after the as-of (or long before it)."""
    return bool(snap.get("accepted")) and not any(
        snap.get(k) for k in ("mau", "subscribers", "open_tickets", "orders_90d", "health_avg")
    )


def run(args: argparse.Namespace) -> int:
    if args.engine not in native.ENGINES:  # $ENGAGEMENT_REPLAY_ENGINE escapes argparse's check
        print(
            f"engagement replay: ENGAGEMENT_REPLAY_ENGINE={args.engine!r} is not an engine: "
            f"use one of {', '.join(native.ENGINES)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        as_of = parse_as_of(args.as_of)
    except AsOfError as exc:
        print(f"engagement replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = Config.from_toml_file(args.config) if args.config else Config()
    except ConfigError as exc:
        print(f"engagement replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    sizes = 0
    for name in args.files:
        if name == "-":
            continue
        if not os.path.isfile(name):
            print(
                f"engagement replay: input file {name} does not exist (or is not a file)",
                file=sys.stderr,
            )
            return EXIT_INPUT
        sizes += os.path.getsize(name)

    rejects: IO[str] | None = None
    if args.rejects:
        try:
            rejects = open(args.rejects, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            print(
                f"engagement replay: cannot write --rejects {args.rejects}: {exc}", file=sys.stderr
            )
            return EXIT_INPUT

    def on_reject(
        reason: str, detail: str, topic: Any, part: Any, off: Any, key: Any, rts: Any, value: Any
    ) -> None:
        assert rejects is not None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "backslashreplace")
        rec = {
            "reason": reason,
            "detail": detail,
            "topic": topic,
            "partition": part,
            "offset": off,
            "key": key,
            "ts": rts,
            "payload": value,
        }
        rejects.write(json.dumps(rec, ensure_ascii=True) + "\n")

    if args.engine == "native" and not native.available():
        print(
            "engagement replay: --engine native: the compiled core (engagement_native) is not "
            "installed; `make install` builds it from native/ (it needs cargo), or use "
            "--engine python",
            file=sys.stderr,
        )
        if rejects is not None:
            rejects.close()
        return EXIT_USAGE
    if args.engine == "auto" and not native.available() and args.progress != "none":
        print(
            "engagement replay: the compiled core is not installed (`make install` builds it "
            "with cargo); using the Python engine",
            file=sys.stderr,
        )
    try:
        replayer = native.make_replayer(
            config, as_of, args.partitions, on_reject if rejects else None, args.engine
        )
    except ValueError:  # an as-of finer than nanoseconds: only the Python engine holds it
        replayer = Replayer(config, as_of, args.partitions, on_reject if rejects else None)
    progress = Progress(sizes, args.progress, sys.stderr)
    done = 0
    with gc_paused():  # the replay allocates millions of acyclic containers
        try:
            for name in args.files:
                try:
                    fh = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
                except OSError as exc:
                    print(f"engagement replay: cannot read {name}: {exc}", file=sys.stderr)
                    return EXIT_INPUT
                try:
                    if isinstance(replayer, native.NativeReplayer):
                        _feed_native(replayer, fh, progress, done)
                    else:
                        line = replayer.line
                        for n, raw in enumerate(fh, 1):
                            line(raw)
                            if n & 0x3FFF == 0:
                                progress.update(
                                    done + fh.tell() if fh is not sys.stdin.buffer else done,
                                    replayer.lines,
                                )
                    if fh is not sys.stdin.buffer:
                        done += os.path.getsize(name)
                except OSError as exc:
                    print(f"engagement replay: cannot read {name}: {exc}", file=sys.stderr)
                    return EXIT_INPUT
                finally:
                    if fh is not sys.stdin.buffer:
                        fh.close()
            progress.update(done, replayer.lines, final=True)
            snap = replayer.snapshot()
        finally:
            if rejects is not None:
                rejects.close()
    if counts_nothing(snap):
        print(
            f"engagement replay: warning: the snapshot as of {args.as_of} counts none of the "
            f"{snap['accepted']:,} accepted records: their event times are all after --as-of "
            "(or too long before it for any window); is --as-of the instant you meant?",
            file=sys.stderr,
        )
    json.dump(snap, sys.stdout, indent=None if args.compact else 2, ensure_ascii=True)
    sys.stdout.write("\n")
    return EXIT_OK
