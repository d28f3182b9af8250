"""List the rejected records of the dead-letters topic by reason, and re-send chosen ones.

Reads the dead-letters topic from its start to its current end (nothing is consumed: no consumer
group, no commit). Every dead letter is the rejected record's original key, value and timestamp
with headers `reason`, `detail`, `source-topic`, `source-partition`, `source-offset`; a record the
worker wrote twice (dead letters are at-least-once) is listed once, by its source position.

Without --records it prints the count per reason; --records (or --reason) lists the records:
the dead letter's position P:O in the dead-letters topic, the reason and detail, the source
topic/partition/offset, the key and the start of the value.

Re-sending (--resend) writes the chosen records to their source topic, same key and record
timestamp, with a header `resent-from: dead-letters/P/O`; the workers process them as new
records (the original rejection stays counted). Choose them by --reason and/or --offset P:O; to
fix them first, --export FILE.jsonl writes the chosen ones as kcat-style lines (plus their
`dead_letter` position, `reason` and `detail`), you edit the `payload`s, and --resend --fix
FILE.jsonl sends each line's payload instead of the original value. --dry-run shows what would be
sent. A fixed record that repeats an accepted event_id is a duplicate, so sending twice is safe.

examples:
  engagement dead-letters                                  # counts per reason
  engagement dead-letters --reason schema --records        # the schema rejects, with details
  engagement dead-letters --json | jq .counts
  engagement dead-letters --reason schema --export bad.jsonl   # then edit the payloads...
  engagement dead-letters --resend --fix bad.jsonl          # ...and send the fixed records
  engagement dead-letters --resend --offset 0:12 --offset 1:7 --dry-run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from typing import Any

from agents.exits import EXIT_FAILURE, EXIT_INPUT, EXIT_OK, EXIT_USAGE
from engagement_cli.cli import add_kafka_arguments
from streams.records import REJECT_REASONS
from streams.topics import DEAD_LETTERS

PREVIEW = 80


@dataclass
class DeadLetter:
    partition: int  # in the dead-letters topic
    offset: int
    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"

    def as_json(self) -> dict[str, Any]:
        return {
            "dead_letter": self.position,
            "reason": self.reason,
            "detail": self.detail,
            "topic": self.source_topic,
            "partition": self.source_partition,
            "offset": self.source_offset,
            "ts": self.timestamp,
            "key": _text(self.key),
            "payload": _text(self.value),
        }


def _text(b: bytes | None) -> str | None:
    # surrogateescape keeps bytes that are not UTF-8 round-trippable through a JSON file
    return None if b is None else b.decode("utf-8", "surrogateescape")


def _bytes(s: str | None) -> bytes | None:
    return None if s is None else s.encode("utf-8", "surrogateescape")


def from_record(m: Any) -> DeadLetter:
    h = {k: v.decode("utf-8", "replace") for k, v in (m.headers or ())}

    def num(name: str) -> int:
        try:
            return int(h.get(name, "-1"))
        except ValueError:
            return -1

    return DeadLetter(
        partition=m.partition,
        offset=m.offset,
        reason=h.get("reason", "?"),
        detail=h.get("detail", ""),
        source_topic=h.get("source-topic", ""),
        source_partition=num("source-partition"),
        source_offset=num("source-offset"),
        key=m.key,
        value=m.value,
        timestamp=m.timestamp,
    )


def dedupe(letters: list[DeadLetter]) -> list[DeadLetter]:
    """One dead letter per source position (the first written), in dead-letters order."""
    seen: set[tuple[str, int, int]] = set()
    out = []
    for d in sorted(letters, key=lambda d: (d.partition, d.offset)):
        src = (d.source_topic, d.source_partition, d.source_offset)
        if d.source_offset >= 0 and src in seen:
            continue
        seen.add(src)
        out.append(d)
    return out


def counts(letters: list[DeadLetter]) -> dict[str, int]:
    out = dict.fromkeys(REJECT_REASONS, 0)
    for d in letters:
        out[d.reason] = out.get(d.reason, 0) + 1
    return out


def parse_position(raw: str) -> tuple[int, int]:
    try:
        p, o = raw.split(":")
        pos = int(p), int(o)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a dead-letter position P:O (partition:offset, as listed)"
        ) from None
    if pos[0] < 0 or pos[1] < 0:
        raise argparse.ArgumentTypeError(f"{raw!r}: partition and offset are >= 0")
    return pos


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_kafka_arguments(p)
    p.add_argument("--reason", choices=REJECT_REASONS, help="only the records of this reason")
    p.add_argument(
        "--offset",
        type=parse_position,
        action="append",
        metavar="P:O",
        help="only this dead letter (partition:offset in the dead-letters topic); repeatable",
    )
    p.add_argument("--records", action="store_true", help="list the records, not only counts")
    p.add_argument("--json", action="store_true", help="one JSON object: counts and records")
    p.add_argument("--export", metavar="FILE.jsonl", help="write the chosen records to a file")
    p.add_argument("--resend", action="store_true", help="send the chosen records to their source")
    p.add_argument("--fix", metavar="FILE.jsonl", help="with --resend: send these payloads instead")
    p.add_argument("--dry-run", action="store_true", help="with --resend: only show what is sent")
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="Kafka timeout (30)"
    )


async def read_dead_letters(bootstrap: str, topic: str, timeout: float) -> list[DeadLetter]:
    """Every record of the dead-letters topic, from the start to the end offsets of now."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from agents.admin import connect, partition_counts

    admin = await connect(bootstrap, timeout)
    try:
        n = (await partition_counts(admin, [topic])).get(topic)
    finally:
        await admin.close()
    if not n:
        raise LookupError(
            f"the topic {topic} does not exist (check --prefix / ENGAGEMENT_TOPIC_PREFIX; "
            "`engagement topics` creates it)"
        )
    from agents.security import kafka_kwargs

    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=int(timeout * 1000),
        max_partition_fetch_bytes=2 * 1024 * 1024,
        **kafka_kwargs(),
    )
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(n)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        out: list[DeadLetter] = []
        todo = {tp for tp in tps if ends[tp] > await c.position(tp)}
        while todo:
            data = await c.getmany(*todo, timeout_ms=int(timeout * 1000))
            if not data:
                raise TimeoutError(f"no data from {topic} within {timeout:g}s")
            for tp, msgs in data.items():
                for m in msgs:
                    if m.offset < ends[tp]:
                        out.append(from_record(m))
                if await c.position(tp) >= ends[tp]:
                    todo.discard(tp)
        return out
    finally:
        await c.stop()


def read_fix_file(path: str) -> dict[tuple[int, int], DeadLetter]:
    """Lines of an --export file (edited): dead-letter position -> the record to send."""
    out: dict[tuple[int, int], DeadLetter] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
                pos = parse_position(str(e["dead_letter"]))
                payload = e["payload"]
                if payload is not None and not isinstance(payload, str):
                    raise TypeError("payload must be a string or null")
                d = DeadLetter(
                    pos[0], pos[1], str(e.get("reason", "")), str(e.get("detail", "")),
                    str(e["topic"]), int(e["partition"]), int(e["offset"]),
                    _bytes(e.get("key")), _bytes(payload), int(e["ts"]),
                )  # fmt: skip
            except (ValueError, KeyError, TypeError, argparse.ArgumentTypeError) as exc:
                raise ValueError(f"{path}:{n}: not a line of an --export file ({exc})") from None
            out[pos] = d
    return out


async def resend(bootstrap: str, letters: list[DeadLetter], dl_topic: str) -> int:
    from aiokafka import AIOKafkaProducer

    from agents.security import kafka_kwargs

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=2**21,
        **kafka_kwargs(),
    )
    await producer.start()
    try:
        for d in letters:
            await producer.send(
                d.source_topic,
                key=d.key,
                value=d.value,
                timestamp_ms=d.timestamp,
                headers=[("resent-from", f"{dl_topic}/{d.partition}/{d.offset}".encode())],
            )
        await producer.flush()
    finally:
        await producer.stop()
    return len(letters)


def _preview(b: bytes | None) -> str:
    if b is None:
        return "(no value)"
    s = b[: PREVIEW * 4].decode("utf-8", "backslashreplace")
    s = s.encode("unicode_escape").decode("ascii")  # control characters stay on one line
    return s if len(s) <= PREVIEW else s[: PREVIEW - 3] + "..."


def print_table(c: dict[str, int], letters: list[DeadLetter] | None) -> None:
    print(f"{'reason':<10} {'records':>8}")
    for reason, n in c.items():
        print(f"{reason:<10} {n:>8}")
    print(f"{'total':<10} {sum(c.values()):>8}")
    if letters is None:
        return
    print()
    for d in letters:
        print(
            f"{d.position:<8} {d.reason:<9} {d.source_topic}/{d.source_partition}/"
            f"{d.source_offset}  key={_text(d.key)!r}  {d.detail}"
        )
        print(f"         {_preview(d.value)}")


def run(args: argparse.Namespace) -> int:
    if (args.fix or args.dry_run) and not args.resend:
        print("engagement dead-letters: --fix and --dry-run go with --resend", file=sys.stderr)
        return EXIT_USAGE
    if args.resend and not (args.reason or args.offset or args.fix):
        print(
            "engagement dead-letters: --resend needs a choice: --reason R, --offset P:O or "
            "--fix FILE.jsonl (re-sending every dead letter is never what you want)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    import logging

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    topic = args.prefix + DEAD_LETTERS
    fixes: dict[tuple[int, int], DeadLetter] = {}
    if args.fix:
        try:
            fixes = read_fix_file(args.fix)
        except OSError as exc:
            print(f"engagement dead-letters: cannot read {args.fix}: {exc}", file=sys.stderr)
            return EXIT_INPUT
        except ValueError as exc:
            print(f"engagement dead-letters: {exc}", file=sys.stderr)
            return EXIT_INPUT
    try:
        everything = dedupe(asyncio.run(read_dead_letters(args.bootstrap, topic, args.timeout)))
    except (LookupError, TimeoutError) as exc:
        print(f"engagement dead-letters: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:
        print(
            f"engagement dead-letters: cannot read {topic} from Kafka at {args.bootstrap} "
            f"({type(exc).__name__}: {exc}); is Kafka up? (`make stack-status`)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    chosen = everything
    if args.reason:
        chosen = [d for d in chosen if d.reason == args.reason]
    if args.offset:
        wanted = set(args.offset)
        chosen = [d for d in chosen if (d.partition, d.offset) in wanted]
        unknown = wanted - {(d.partition, d.offset) for d in everything}
        if unknown:
            where = ", ".join(f"{p}:{o}" for p, o in sorted(unknown))
            print(f"engagement dead-letters: no dead letter at {where}", file=sys.stderr)
            return EXIT_USAGE
    if args.fix:
        known = {(d.partition, d.offset) for d in chosen}
        missing = sorted(set(fixes) - {(d.partition, d.offset) for d in everything})
        if missing:
            where = ", ".join(f"{p}:{o}" for p, o in missing)
            print(
                f"engagement dead-letters: {args.fix}: no dead letter at {where}", file=sys.stderr
            )
            return EXIT_INPUT
        chosen = [fixes[pos] for pos in sorted(fixes) if pos in known]
    if args.export:
        try:
            with open(args.export, "w", encoding="ascii") as fh:
                for d in chosen:  # escaped: bytes that are not UTF-8 survive the round trip
                    fh.write(json.dumps(d.as_json()) + "\n")
        except OSError as exc:
            print(f"engagement dead-letters: cannot write {args.export}: {exc}", file=sys.stderr)
            return EXIT_INPUT
        print(f"dead-letters: wrote {len(chosen)} records to {args.export}", file=sys.stderr)
    if args.resend:
        for d in chosen:
            print(
                f"{'would resend' if args.dry_run else 'resend'} {d.position} -> "
                f"{d.source_topic} key={_text(d.key)!r} {_preview(d.value)}"
            )
        if not args.dry_run:
            try:
                n = asyncio.run(resend(args.bootstrap, chosen, topic))
            except Exception as exc:
                print(
                    f"engagement dead-letters: resending failed ({type(exc).__name__}: {exc}); "
                    "some records may have been sent (a repeated event_id is a duplicate, so "
                    "retrying is safe)",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
            print(f"dead-letters: resent {n} records", file=sys.stderr)
        return EXIT_OK
    if args.json:
        body = {
            "topic": topic,
            "counts": counts(everything),
            "records": [d.as_json() for d in chosen]
            if (args.records or args.reason or args.offset)
            else [],
        }
        print(json.dumps(body, ensure_ascii=True, indent=1))
        return EXIT_OK
    if not args.export:
        listing = chosen if (args.records or args.reason or args.offset) else None
        print_table(counts(everything), listing)
    return EXIT_OK
