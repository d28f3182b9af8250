"""Reset the workers' state so they reprocess every record from the start of the input topics.

Needed after changing `timezone`, `inactive_events`, `activation_events`, `value_event` or
`funnel_steps` (state is folded with them, so it cannot be converted), or the partition count.
Stop-the-world: stop every worker first; the command refuses while a worker is registered alive
in Redis or a member is in the consumer groups (--force skips these checks: only when you know the
workers are gone, e.g. Redis was flushed). It then:

1. keeps the forget tombstones of the tables (users erased with `engagement forget` stay erased:
   their records in the input topics are skipped again, by source offset);
2. deletes the internal topics (`<app>-batches`, `<app>-account-facts`) and the tables'
   changelogs, waits until Kafka has removed them, and creates them again (empty), writing the
   tombstones back;
3. resets the intake consumer group to the start of the input topics;
4. deletes the worker registry and the health scores in Redis (republished on reprocessing)
   and the local data directory (RocksDB) given by --data-dir (repeatable): delete the data
   directory of every worker host too (Kubernetes: the StatefulSet's volumes).

Then start the workers (with the new configuration): they read every record of the input
topics again. The cost is reprocessing: about records / throughput, e.g. 1,000,000 records at
~50,000 records/s per worker (bench/RESULTS.md) is ~20 seconds for one worker; more workers go
faster up to one per partition. Input topics, dead-letters and churn-signals are not touched
(churn signals and dead letters are written again as the records are reprocessed: consumers
dedupe on the source position). The command prints the record count and the estimate.

examples:
  engagement rebuild --dry-run                 # what would be deleted, and the cost
  engagement rebuild --yes                     # do it (no prompt)
  ENGAGEMENT_CONFIG=new.toml engagement rebuild --yes && engagement worker --config new.toml
  engagement rebuild --yes --data-dir /var/lib/engagement/w1 --data-dir /var/lib/engagement/w2
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from agents.epoch import FORGOT_PREFIX
from agents.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from agents.internal import Names
from agents.settings import Settings
from streams.errors import ConfigError
from streams.records import PRODUCT_EVENTS, SURVEY_ANSWERS

# records/s of one worker on a backlog (bench/RESULTS.md, 2026-12-06, session 13:
# 125,000-185,000/s at 60,000 users, 46,000-69,000/s at 1.5M users, on 2 cores shared with the
# broker): the lower end, since a rebuild's users are many
THROUGHPUT = 50_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", default=None, help="Kafka (env KAFKA_BOOTSTRAP; 127.0.0.1:9092)")
    p.add_argument("--redis-url", default=None, help="Redis of the workers (env REDIS_URL)")
    p.add_argument(
        "--data-dir",
        action="append",
        default=None,
        metavar="DIR",
        help="a worker's local data directory to delete (env ENGAGEMENT_DATA_DIR; .run/worker); "
        "repeatable",
    )
    p.add_argument("--force", action="store_true", help="skip the checks that no worker runs")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--dry-run", action="store_true", help="only print what would be done")


async def _kafka_state(s: Settings, names: list[str]) -> tuple[dict[str, int], int, list[str]]:
    """(existing internal topics -> partitions, input records, groups with members)."""
    from agents.admin import connect, partition_counts

    admin = await connect(s.bootstrap)
    try:
        existing = await partition_counts(admin, names)
    finally:
        await admin.close()
    inputs = [s.topic(PRODUCT_EVENTS), s.topic(SURVEY_ANSWERS)]
    internal = [n for n in names if not n.endswith("-changelog") and n in existing]
    busy = [
        *await _busy(s, Names.of(s).intake_group, inputs),
        *await _busy(s, Names.of(s).app_group, internal),
    ]
    return existing, await _input_records(s), busy


async def _busy(s: Settings, group: str, topics: list[str]) -> list[str]:
    """[group] when it has members: a commit from outside the group (generation -1) is refused
    then. (DescribeGroups would say it directly, but aiokafka cannot decode Kafka 4's answer for
    a group with members.) It commits the offsets already committed, or the start."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError
    from aiokafka.structs import OffsetAndMetadata

    from agents.admin import connect, partition_counts

    admin = await connect(s.bootstrap)
    try:
        counts = await partition_counts(admin, topics)
    finally:
        await admin.close()
    tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
    if not tps:
        return []
    c = AIOKafkaConsumer(
        bootstrap_servers=s.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        **s.kafka_security.aiokafka_kwargs(),
    )
    await c.start()
    try:
        c.assign(tps)
        begin = await c.beginning_offsets(tps)
        offsets = {}
        for tp in tps:
            done = await c.committed(tp)
            offsets[tp] = OffsetAndMetadata(begin[tp] if done is None else done, "")
        try:
            await c.commit(offsets)
        except KafkaError as exc:
            return [f"group {group} has members ({type(exc).__name__})"]
    finally:
        await c.stop()
    return []


async def _input_records(s: Settings) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from agents.admin import connect, partition_counts

    inputs = [s.topic(PRODUCT_EVENTS), s.topic(SURVEY_ANSWERS)]
    admin = await connect(s.bootstrap)
    try:
        counts = await partition_counts(admin, inputs)
    finally:
        await admin.close()
    tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
    if not tps:
        return 0
    c = AIOKafkaConsumer(
        bootstrap_servers=s.bootstrap,
        enable_auto_commit=False,
        **s.kafka_security.aiokafka_kwargs(),
    )
    await c.start()
    try:
        begin = await c.beginning_offsets(tps)
        end = await c.end_offsets(tps)
    finally:
        await c.stop()
    return sum(end[tp] - begin[tp] for tp in tps)


async def _read_tombstones(s: Settings, changelogs: dict[str, int]) -> dict[str, dict[int, bytes]]:
    """The latest forget tombstone of each changelog partition (key `\\x00forgot:<p>`)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    out: dict[str, dict[int, bytes]] = {}
    tps = [TopicPartition(t, p) for t, n in changelogs.items() for p in range(n)]
    if not tps:
        return out
    c = AIOKafkaConsumer(
        bootstrap_servers=s.bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=2**24,
        **s.kafka_security.aiokafka_kwargs(),
    )
    await c.start()
    try:
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        end = await c.end_offsets(tps)
        todo = {tp for tp in tps if end[tp] > await c.position(tp)}
        while todo:
            data = await c.getmany(*todo, timeout_ms=10_000)
            if not data:
                raise TimeoutError("the changelogs could not be read in 10 s")
            for tp, msgs in data.items():
                for m in msgs:
                    if m.key and m.key.startswith(FORGOT_PREFIX) and m.offset < end[tp]:
                        if m.value is None:
                            out.get(tp.topic, {}).pop(tp.partition, None)
                        else:
                            out.setdefault(tp.topic, {})[tp.partition] = m.value
                if await c.position(tp) >= end[tp]:
                    todo.discard(tp)
    finally:
        await c.stop()
    return out


async def _reset(s: Settings, existing: dict[str, int], tombs: dict[str, dict[int, bytes]]) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    from agents.admin import connect, delete_topics, ensure_topics
    from agents.internal import internal_topic_specs

    specs = internal_topic_specs(s)
    await delete_topics(s.bootstrap, list(existing))
    admin = await connect(s.bootstrap)
    try:  # deletion is asynchronous: wait until the names are free
        deadline = time.monotonic() + 60
        while set(existing) & set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise TimeoutError("Kafka did not delete the internal topics within 60 s")
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    deadline = time.monotonic() + 60
    while True:
        try:
            statuses = await ensure_topics(s.bootstrap, specs)
            break
        except Exception:  # a topic still being deleted cannot be created yet
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)
    bad = [st.describe() for st in statuses if not st.ok]
    if bad:
        raise RuntimeError("; ".join(bad))
    producer = AIOKafkaProducer(
        bootstrap_servers=s.bootstrap, acks="all", **s.kafka_security.aiokafka_kwargs()
    )
    await producer.start()
    try:
        for topic, parts in tombs.items():
            for p, value in parts.items():
                if p >= s.partitions:  # the partition count changed: the owners moved
                    continue
                key = FORGOT_PREFIX + str(p).encode()
                await producer.send_and_wait(topic, value=value, key=key, partition=p)
    finally:
        await producer.stop()
    # the groups start over: the intake at the start of the inputs, Faust at the start of the
    # (new, empty) internal topics
    inputs = [s.topic(PRODUCT_EVENTS), s.topic(SURVEY_ANSWERS)]
    n = Names.of(s)
    internal = [n.batches, n.account_facts]
    for group, topics in ((n.intake_group, inputs), (n.app_group, internal)):
        c = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            **s.kafka_security.aiokafka_kwargs(),
        )
        await c.start()
        try:
            tps = [TopicPartition(t, p) for t in topics for p in range(s.partitions)]
            begin = await c.beginning_offsets(tps)
            c.assign(tps)
            await c.commit({tp: OffsetAndMetadata(begin[tp], "") for tp in tps})
        finally:
            await c.stop()


def _redis_workers(s: Settings) -> tuple[Any, list[str]]:
    import redis

    r = redis.Redis.from_url(
        s.redis_url,
        socket_timeout=5,
        socket_connect_timeout=5,
        **s.redis_security.client_kwargs(s.redis_url),
    )
    keys = sorted(k.decode() for k in r.scan_iter(match=Names.of(s).registry_key("*")))
    return r, keys


def _clear_redis(r: Any, s: Settings) -> int:
    n = Names.of(s)
    keys = [k for k in r.scan_iter(match=n.registry_key("*"))]
    keys += list(n.health_keys())
    return int(r.delete(*keys)) if keys else 0


def run(args: argparse.Namespace) -> int:
    import logging

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        s = Settings.load(overrides={"bootstrap": args.bootstrap, "redis_url": args.redis_url})
    except ConfigError as exc:
        print(f"engagement rebuild: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from agents.internal import internal_topic_specs

    names = [spec.name for spec in internal_topic_specs(s)]
    dirs = [Path(d) for d in (args.data_dir or [s.data_dir])]
    try:
        existing, records, busy = asyncio.run(_kafka_state(s, names))
    except Exception as exc:
        print(
            f"engagement rebuild: cannot reach Kafka at {s.bootstrap} ({type(exc).__name__}: "
            f"{exc}); is it up? (`make stack-status`)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    r = None
    alive: list[str] = []
    try:
        r, alive = _redis_workers(s)
    except Exception as exc:
        if not args.force:
            print(
                f"engagement rebuild: cannot reach Redis ({type(exc).__name__}), so cannot check "
                "that no worker runs; start Redis, or give --force if you know they are stopped",
                file=sys.stderr,
            )
            return EXIT_FAILURE
    if (alive or busy) and not args.force:
        who = ", ".join([k.rsplit(":", 1)[-1] for k in alive] + busy)
        print(
            f"engagement rebuild: workers are running ({who}); stop every `engagement worker` "
            "of this app first (a rebuild is stop-the-world), then run it again",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    secs = records / THROUGHPUT
    print(f"rebuild of app {s.topic(s.app_id)!r} on {s.bootstrap}:")
    print(f"  delete and recreate: {', '.join(names)}")
    print(f"  reset consumer groups: {s.topic(s.app_id)}, {s.topic(f'{s.app_id}-intake')}")
    print(f"  delete local data: {', '.join(map(str, dirs))}; Redis registry and health scores")
    print(
        f"  then the workers reprocess {records:,} input records: about {secs:,.0f} s for one "
        f"worker at ~{THROUGHPUT:,} records/s, less with more workers (up to {s.partitions})"
    )
    if args.dry_run:
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            print(
                "engagement rebuild: give --yes to confirm (stdin is not a terminal)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        if input("type 'rebuild' to go on: ").strip() != "rebuild":
            print("engagement rebuild: not confirmed; nothing changed", file=sys.stderr)
            return EXIT_FAILURE
    try:
        changelogs = {n: k for n, k in existing.items() if n.endswith("-changelog")}
        tombs = asyncio.run(_read_tombstones(s, changelogs))
        asyncio.run(_reset(s, existing, tombs))
    except Exception as exc:
        print(
            f"engagement rebuild: failed ({type(exc).__name__}: {exc}); the state is partly "
            "reset: run the command again before starting workers",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    if r is not None:
        try:
            _clear_redis(r, s)
        except Exception as exc:
            print(f"engagement rebuild: Redis not cleared ({exc}); harmless", file=sys.stderr)
        r.close()
    kept = sum(len(v) for v in tombs.values())
    print(f"rebuild: done ({kept} forget tombstones kept); start the workers")
    return EXIT_OK
