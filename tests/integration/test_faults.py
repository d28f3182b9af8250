"""The fault suite (issue #7, items 1-5), on a real Kafka and Redis of its own.

Every test streams a simulated dataset (every bad case included) into Kafka with `engagement
load --rate`, disturbs the pipeline while the stream runs, and ends with the workers' /snapshot
equal to `replay_lines` (streams/replay.py) of everything produced: nothing lost, nothing
counted twice.

The broker and Redis of these tests are a PRIVATE stack (deploy/local/stack-up.sh with
STACK_SERVICES="kafka redis", its own run directory and ports), started once per session and
stopped at its end, so stopping them never disturbs the shared stack other tests use. Ports
(defaults collide neither with the developer's stack nor with CI's): FAULTS_KAFKA_PORT=31092,
FAULTS_KAFKA_CONTROLLER_PORT=31093, FAULTS_REDIS_PORT=31379; FAULTS_RUN_DIR (default
<ENGAGEMENT_RUN_DIR or .run>/faults); FAULTS_KEEP_TOPICS=1 keeps each test's topics (to
investigate a failure; the stack is stopped at the end of the session, its data kept). They must stay below Linux's ephemeral range (32768+):
clients reconnecting to a stopped broker on such a port can be given that very port as their
own local port (a TCP self-connect), and the broker then cannot bind it again.

Each test prints one `FAULT ...` line with its measured outcome (records in / counted / lost /
doubled, recovery times) and appends it to <run dir>/faults-results.jsonl; docs/operations.md
("Faults we test") records them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from streams.config import Config
from streams.replay import replay_lines
from streams.timeutil import format_instant
from tests.integration.live_harness import (
    REPO,
    WorkerProc,
    make_dataset,
    total_records,
    wait_for_snapshot,
    wait_ready,
    write_jsonl,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(300)]

PARTITIONS = 8
STACK_UP = REPO / "deploy" / "local" / "stack-up.sh"
STACK_DOWN = REPO / "deploy" / "local" / "stack-down.sh"


# ---- the private stack -------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultStack:
    """Kafka and Redis of the fault tests alone; services can be stopped and started again."""

    run_dir: Path
    kafka_port: int
    redis_port: int
    env: dict[str, str]  # what the stack scripts need to address this stack

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def _script(self, script: Path, *args: str, services: str | None = None) -> None:
        env = dict(self.env)
        if services is not None:
            env["STACK_SERVICES"] = services
        r = subprocess.run(
            ["bash", str(script), *args], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        if r.returncode != 0:
            pytest.fail(
                f"{script.name} {' '.join(args)} exited {r.returncode}:\n{r.stderr[-3000:]}"
            )

    def up(self, services: str = "kafka redis") -> None:
        self._script(STACK_UP, services=services)

    def down(self, *services: str) -> None:
        self._script(STACK_DOWN, *services)

    def results(self) -> Path:
        return self.run_dir / "faults-results.jsonl"


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@pytest.fixture(scope="session")
def fault_stack() -> Iterator[FaultStack]:
    main_run = Path(os.environ.get("ENGAGEMENT_RUN_DIR") or REPO / ".run")
    run_dir = Path(os.environ.get("FAULTS_RUN_DIR") or main_run / "faults")
    kafka_port = _port("FAULTS_KAFKA_PORT", 31092)
    redis_port = _port("FAULTS_REDIS_PORT", 31379)
    drop = ("KAFKA_BOOTSTRAP", "SECURE", "STACK_SECURE", "STACK_SERVICES")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        ENGAGEMENT_RUN_DIR=str(run_dir),
        KAFKA_PORT=str(kafka_port),
        KAFKA_CONTROLLER_PORT=str(_port("FAULTS_KAFKA_CONTROLLER_PORT", 31093)),
        REDIS_PORT=str(redis_port),
        # not started (STACK_SERVICES), but lib.sh derives them: keep them off the others' ports
        PROMETHEUS_PORT=str(_port("FAULTS_PROMETHEUS_PORT", 31090)),
        ALERTMANAGER_PORT=str(_port("FAULTS_ALERTMANAGER_PORT", 31094)),
        WORKER_PORT=str(_port("FAULTS_WORKER_PORT", 31066)),
        STACK_SKIP_TOPICS="1",
        KAFKA_HEAP_OPTS=os.environ.get("FAULTS_KAFKA_HEAP_OPTS") or "-Xms128m -Xmx512m",
    )
    st = FaultStack(run_dir, kafka_port, redis_port, env)
    st.up()
    try:
        yield st
    finally:
        st.down()


# ---- per test ----------------------------------------------------------------------------------


@dataclass
class Run:
    """One fault test: its topics, Redis database, dataset and workers."""

    stack: FaultStack
    tmp: Path
    prefix: str
    redis_db: int
    data: Path
    n: int
    as_of: str
    workers: list[WorkerProc]
    loaders: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        # the private stack is plaintext: no setting of the shared stack's (or a secure run's)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ENGAGEMENT_", "KAFKA_", "REDIS_"))
        }
        env.update(
            KAFKA_BOOTSTRAP=self.stack.bootstrap,
            REDIS_URL=f"redis://127.0.0.1:{self.stack.redis_port}/{self.redis_db}",
            ENGAGEMENT_TOPIC_PREFIX=self.prefix,
            ENGAGEMENT_INPUT_PARTITIONS=str(PARTITIONS),
            ENGAGEMENT_APP_ID=self.prefix.strip(".").replace(".", "-") + "-app",
            ENGAGEMENT_CLOCK=self.as_of,
            ENGAGEMENT_LOG_LEVEL="info",
        )
        return env

    def worker(self, name: str) -> WorkerProc:
        d = self.tmp / name
        d.mkdir(exist_ok=True)
        w = WorkerProc(name, {**self.env, "ENGAGEMENT_DATA_DIR": str(d)}, self.tmp / f"{name}.log")
        self.workers.append(w)
        return w

    def alive(self) -> list[WorkerProc]:
        return [w for w in self.workers if w.proc is not None and w.proc.poll() is None]

    def load(self, path: Path | None = None, rate: float = 0) -> subprocess.Popen[bytes]:
        """`engagement load --rate` in the background (the producer under test)."""
        args = [sys.executable, "-m", "engagement_cli", "load", str(path or self.data)]
        if rate:
            args += ["--rate", str(rate)]
        log = open(self.tmp / "load.log", "ab")  # noqa: SIM115 (the child keeps its copy)
        try:
            proc = subprocess.Popen(args, cwd=REPO, env=self.env, stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL)  # fmt: skip
        finally:
            log.close()
        self.loaders.append(proc)
        return proc

    def wait_load(self, proc: subprocess.Popen[bytes], timeout: float = 240) -> None:
        rc = proc.wait(timeout)
        assert rc == 0, (self.tmp / "load.log").read_text()[-3000:]

    def expected(self, path: Path | None = None) -> dict[str, Any]:
        with open(path or self.data, "rb") as fh:
            return replay_lines(fh, Config(), self.as_of)

    def snapshot_equals_replay(self, timeout: float = 240) -> dict[str, Any]:
        """Wait until /snapshot counts every record Kafka holds, then check it against the
        replay of those records, on every live worker; returns the outcome counts."""
        path, in_kafka, copies = produced_file(self)
        live = wait_for_snapshot(self.alive(), self.as_of, in_kafka, timeout=timeout)
        expected = self.expected(path)
        assert total_records(expected) == in_kafka
        outcome = {
            "in": self.n,
            "in_kafka": in_kafka,
            "producer_copies": copies,
            "counted": total_records(live),
            "lost": max(0, total_records(expected) - total_records(live)),
            "doubled": max(0, live["accepted"] - expected["accepted"])
            + max(0, total_records(live) - total_records(expected)),
        }
        _compare(live, expected)
        for w in self.alive():
            status, body = w.get(f"/snapshot?as_of={self.as_of}")
            for _ in range(30):  # 503 while a rebalance settles: retry
                if status == 200:
                    break
                time.sleep(2)
                status, body = w.get(f"/snapshot?as_of={self.as_of}")
            assert status == 200, body
            _compare(body, expected)
        return outcome

    def report(self, fault: str, **figures: Any) -> None:
        line = {"fault": fault, **figures}
        print("FAULT " + json.dumps(line))
        with open(self.stack.results(), "a") as fh:
            fh.write(
                json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **line})
                + "\n"
            )


def _compare(live: dict[str, Any], expected: dict[str, Any]) -> None:
    live = dict(live)
    assert live.pop("coverage"), "the snapshot says what it covers"
    assert set(live) == set(expected)
    diffs = {k: (live[k], expected[k]) for k in expected if live[k] != expected[k]}
    assert not diffs, json.dumps(diffs, indent=1)[:3000]


def _create_topics(bootstrap: str, prefix: str) -> None:
    import asyncio

    from agents import admin
    from streams.topics import TopicSettings, topic_specs

    specs = topic_specs(TopicSettings(prefix=prefix, input_partitions=PARTITIONS))
    statuses = asyncio.run(admin.ensure_topics(bootstrap, specs))
    assert all(s.ok for s in statuses), [s.describe() for s in statuses]


def _delete_topics(bootstrap: str, prefix: str) -> None:
    import asyncio

    from agents import admin

    async def cleanup() -> None:
        names = [n for n in await admin.list_topics(bootstrap) if n.startswith(prefix)]
        await admin.delete_topics(bootstrap, names)

    asyncio.run(cleanup())


def make_run(
    fault_stack: FaultStack, tmp_path: Path, name: str, records: int, users: int, seed: int
) -> Iterator[Run]:
    import uuid

    prefix = f"faults.{name}-{uuid.uuid4().hex[:6]}."
    envs, last_ms = make_dataset(records, users=users, seed=seed, partitions=PARTITIONS)
    data = tmp_path / "all.jsonl"
    write_jsonl(envs, data)
    as_of = format_instant((last_ms + 60_000) * 1_000_000)
    db = 1 + sum(map(ord, name)) % 60  # the private Redis: one database per fault
    client = redis.Redis(host="127.0.0.1", port=fault_stack.redis_port, db=db)
    client.flushdb()
    _create_topics(fault_stack.bootstrap, prefix)
    run = Run(fault_stack, tmp_path, prefix, db, data, len(envs), as_of, [])
    try:
        yield run
    finally:
        for w in run.workers:
            w.stop()
        for proc in run.loaders:  # a failed test may leave one running
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
        for line in (
            (tmp_path / "load.log").read_text(errors="replace").splitlines()[-3:]
            if (tmp_path / "load.log").exists()
            else []
        ):
            print("load:", line)
        fault_stack.up()  # whatever a test stopped runs again for the next one
        if not os.environ.get("FAULTS_KEEP_TOPICS"):  # keep them to investigate a failure
            _delete_topics(fault_stack.bootstrap, prefix)
        try:
            client.flushdb()
        finally:
            client.close()


RecordId = tuple[str, bytes | None, int, bytes | None]  # (topic, key, timestamp ms, value)


def _file_records(path: Path) -> list[tuple[RecordId, bytes]]:
    """(identity, line) of every line of a kcat-style file, as `engagement load` sends it."""
    out = []
    for line in path.read_bytes().splitlines(keepends=True):
        env = json.loads(line)
        key, payload = env.get("key"), env["payload"]
        rid = (
            env["topic"],
            None if key is None else key.encode("utf-8", "surrogatepass"),
            int(env["ts"]),
            None if payload is None else payload.encode("utf-8", "surrogatepass"),
        )
        out.append((rid, line))
    return out


def kafka_records(run: Run) -> Counter[RecordId]:
    """Every record of the test's input topics, read back from Kafka."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.topics import PRODUCT_EVENTS, SURVEY_ANSWERS

    async def read() -> Counter[RecordId]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=run.stack.bootstrap, enable_auto_commit=False,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )  # fmt: skip
        await consumer.start()
        got: Counter[RecordId] = Counter()
        try:
            tps = [TopicPartition(run.prefix + t, p) for t in (PRODUCT_EVENTS, SURVEY_ANSWERS)
                   for p in range(PARTITIONS)]  # fmt: skip
            ends = await consumer.end_offsets(tps)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            todo = {tp for tp in tps if ends[tp] > 0}
            while todo:
                for tp, msgs in (await consumer.getmany(*todo, timeout_ms=1000)).items():
                    for m in msgs:
                        got[(tp.topic[len(run.prefix) :], m.key, m.timestamp, m.value)] += 1
                        if m.offset >= ends[tp] - 1:
                            todo.discard(tp)
        finally:
            await consumer.stop()
        return got

    return asyncio.run(read())


def produced_file(run: Run) -> tuple[Path, int, int]:
    """What Kafka holds, as a file to replay: the dataset with every extra copy Kafka holds
    (a producer's retry across a broker restart can write a batch twice, idempotence or not)
    right after its original line. Returns (file, records in Kafka, extra copies); fails if a
    record of the dataset is missing from Kafka or Kafka holds one that was never sent."""
    lines = _file_records(run.data)
    sent = Counter(rid for rid, _ in lines)
    held = kafka_records(run)
    missing = sent - held
    assert not missing, f"{sum(missing.values())} records sent are not in Kafka"
    unknown = set(held) - set(sent)
    assert not unknown, f"{len(unknown)} records in Kafka were never sent"
    extra = held - sent
    path = run.tmp / "produced.jsonl"
    with open(path, "wb") as fh:
        for rid, line in lines:
            fh.write(line)
            for _ in range(extra.pop(rid, 0)):
                fh.write(line)
    return path, sum(held.values()), sum((held - sent).values())


def processed(workers: list[WorkerProc]) -> int:
    """Records processed by the live workers (their /health), -1 if none answers."""
    total, seen = 0, False
    for w in workers:
        try:
            status, body = w.get("/health", timeout=3)
        except OSError:
            continue
        if status == 200 and isinstance(body, dict):
            total += int(body.get("records_processed", 0))
            seen = True
    return total if seen else -1


def owning(workers: list[WorkerProc]) -> bool:
    """Every worker has partitions assigned and loaded (/health?ready=1)."""
    for w in workers:
        try:
            status, _ = w.get("/health?ready=1", timeout=3)
        except OSError:
            return False
        if status != 200:
            return False
    return True


def wait_until(what: str, check: Callable[[], bool], timeout: float, step: float = 0.5) -> float:
    """Seconds until check() holds; fails after timeout."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(step)
    return time.monotonic() - start


# ---- 1. the broker stopped for 30 s --------------------------------------------------------------


@pytest.fixture
def broker_run(fault_stack: FaultStack, tmp_path: Path) -> Iterator[Run]:
    yield from make_run(fault_stack, tmp_path, "broker", records=10_000, users=2000, seed=11)


def test_broker_stopped_30s_mid_stream(broker_run: Run) -> None:
    """Workers ride the outage out (none exits: asserted); the producer retries."""
    run = broker_run
    workers = [run.worker("w1").start(), run.worker("w2").start()]
    wait_ready(workers)
    wait_until("the workers own their partitions", lambda: owning(workers), 120)
    loader = run.load(rate=250)  # ~40 s of stream: it ends while the broker is away
    time.sleep(6)
    assert processed(workers) > 0, "the stream is being processed when the broker stops"
    t0 = time.monotonic()
    run.stack.down("kafka")
    stopped = time.monotonic() - t0
    time.sleep(30)
    t1 = time.monotonic()
    run.stack.up("kafka")
    t_back = time.monotonic()
    started = t_back - t1
    before = processed(workers)
    exited = [(w.name, w.proc.returncode) for w in workers if w.proc and w.proc.poll() is not None]
    assert not exited, "\n".join(w.tail() for w in workers)
    resumed = wait_until(
        "processing resumes after the broker is back",
        lambda: processed(workers) > before,
        timeout=120,
    )
    run.wait_load(loader)
    # the producer retried through the outage: every record is in Kafka (some maybe twice:
    # snapshot_equals_replay replays what Kafka holds, and reports the copies)
    outcome = run.snapshot_equals_replay()
    drained = time.monotonic() - t_back
    exited = [(w.name, w.proc.returncode) for w in workers if w.proc and w.proc.poll() is not None]
    assert not exited, "\n".join(w.tail() for w in workers)
    run.report("broker_stopped_30s", broker_stop_s=round(stopped, 1), broker_start_s=round(started, 1),
               outage_s=round(t_back - t0, 1), workers_exited=len(exited),
               resumed_after_s=round(resumed, 1), exact_after_s=round(drained, 1), **outcome)  # fmt: skip


# ---- 2. Redis stopped ----------------------------------------------------------------------------


@pytest.fixture
def redis_run(fault_stack: FaultStack, tmp_path: Path) -> Iterator[Run]:
    yield from make_run(fault_stack, tmp_path, "redis", records=8_000, users=2000, seed=12)


def _counted(workers: list[WorkerProc]) -> float:
    """accepted + duplicates + rejected summed over the workers' /metrics (no Redis needed)."""
    from tests.integration.live_harness import metric_sums

    sums = metric_sums(workers)
    names = (
        "engagement_records_accepted_total",
        "engagement_records_duplicate_total",
        "engagement_records_rejected_total",
    )
    return sum(v for (n, _), v in sums.items() if n in names)


def test_redis_stopped_mid_stream(redis_run: Run) -> None:
    """While Redis is away the stream is processed to its end and /metrics answers; /snapshot
    answers 503 naming Redis; within 10 s of Redis's return /snapshot equals the replay and the
    health set holds the at-risk customers."""
    run = redis_run
    workers = [run.worker("w1").start(), run.worker("w2").start()]
    wait_ready(workers)
    wait_until("the workers own their partitions", lambda: owning(workers), 120)
    loader = run.load(rate=800)  # ~10 s of stream
    time.sleep(3)
    run.stack.down("redis")
    t_down = time.monotonic()
    status, body = workers[0].get(f"/snapshot?as_of={run.as_of}")
    assert status == 503 and "Redis is unavailable" in body["error"], (status, body)
    run.wait_load(loader)
    produced, in_kafka, _ = produced_file(run)
    # processing and /metrics go on: every record is counted while Redis is still away
    wait_until("every record counted in /metrics without Redis",
               lambda: _counted(workers) == in_kafka, timeout=120)  # fmt: skip
    for w in workers:
        status, body = w.get(f"/snapshot?as_of={run.as_of}")
        assert status == 503 and "Redis is unavailable" in body["error"], (status, body)
    away = time.monotonic() - t_down
    run.stack.up("redis")
    expected = run.expected(produced)

    def exact() -> bool:
        status, body = workers[0].get(f"/snapshot?as_of={run.as_of}")
        if status != 200:
            return False
        _compare(body, expected)
        return True

    back_after = wait_until("/snapshot exact after Redis is back", exact, timeout=10, step=0.25)
    from agents.health import health_keys

    zkey, _ = health_keys(run.prefix, run.env["ENGAGEMENT_APP_ID"])
    r = redis.Redis(host="127.0.0.1", port=run.stack.redis_port, db=run.redis_db)
    try:
        at_risk = lambda: r.zcount(zkey, "-inf", "(40")  # noqa: E731
        # the changed customers are published every ENGAGEMENT_HEALTH_PUBLISH_SECONDS (5 s)
        wait_until("the at-risk customers are published again",
                   lambda: at_risk() == expected["customers_at_risk"], timeout=20, step=0.25)  # fmt: skip
    finally:
        r.close()
    outcome = run.snapshot_equals_replay()
    run.report("redis_stopped", redis_away_s=round(away, 1), snapshot_exact_after_s=round(back_after, 1),
               at_risk=expected["customers_at_risk"], **outcome)  # fmt: skip


# ---- 3. repeated SIGKILL; a lost RocksDB directory -------------------------------------------------


@pytest.fixture
def kill_run(fault_stack: FaultStack, tmp_path: Path) -> Iterator[Run]:
    yield from make_run(fault_stack, tmp_path, "kill", records=10_000, users=2000, seed=13)


def test_repeated_sigkill_at_random_moments(kill_run: Run) -> None:
    """Five SIGKILLs of a worker (seeded random victim and moments), each restarted at once as
    a supervisor would, while the stream runs."""
    run = kill_run
    workers = [run.worker("w1").start(), run.worker("w2").start()]
    wait_ready(workers)
    wait_until("the workers own their partitions", lambda: owning(workers), 120)
    loader = run.load(rate=400)  # ~25 s of stream
    rng = random.Random(1)  # victims w1 w2 w1 w2 w1
    kills: list[dict[str, Any]] = []
    for _ in range(5):
        time.sleep(rng.uniform(1.0, 5.0))
        victim = rng.choice(workers)
        victim.kill()
        kills.append({"worker": victim.name, "at_s": round(time.monotonic(), 1)})
        time.sleep(rng.uniform(0.2, 1.5))
        victim.start()
    assert len(kills) >= 5
    t_last = time.monotonic()
    wait_ready(workers)
    ready_after = wait_until("both workers own partitions again", lambda: owning(workers), 120)
    run.wait_load(loader)
    outcome = run.snapshot_equals_replay()
    run.report("sigkill_x5", kills=len(kills), victims=[k["worker"] for k in kills],
               ready_after_last_restart_s=round(ready_after, 1),
               exact_after_last_restart_s=round(time.monotonic() - t_last, 1), **outcome)  # fmt: skip


@pytest.fixture
def rocksdb_run(fault_stack: FaultStack, tmp_path: Path) -> Iterator[Run]:
    yield from make_run(fault_stack, tmp_path, "rocksdb", records=8_000, users=2000, seed=14)


def test_rocksdb_directory_deleted_before_restart(rocksdb_run: Run) -> None:
    """One worker (no other holds any state): SIGKILLed mid-stream, its data directory deleted,
    restarted: it rebuilds every table from the changelogs."""
    run = rocksdb_run
    w = run.worker("w1").start()
    wait_ready([w])
    wait_until("the workers own their partitions", lambda: owning([w]), 120)
    loader = run.load(rate=1500)  # ~5 s of stream
    wait_until("the stream is being processed", lambda: processed([w]) > 2000, 60, 0.2)
    w.kill()
    data_dir = Path(w.env["ENGAGEMENT_DATA_DIR"])
    assert any(data_dir.rglob("*")), "the worker had written its RocksDB tables"
    shutil.rmtree(data_dir)
    t0 = time.monotonic()
    w.start()
    wait_ready([w])
    wait_until("the worker owns its partitions again", lambda: owning([w]), 120)
    ready_after = time.monotonic() - t0
    run.wait_load(loader)
    outcome = run.snapshot_equals_replay()
    run.report("rocksdb_deleted", ready_after_restart_s=round(ready_after, 1),
               exact_after_restart_s=round(time.monotonic() - t0, 1), **outcome)  # fmt: skip


# ---- 4. scaling 1 -> 3 -> 1 ------------------------------------------------------------------------


@pytest.fixture
def scale_run(fault_stack: FaultStack, tmp_path: Path) -> Iterator[Run]:
    yield from make_run(fault_stack, tmp_path, "scale", records=10_000, users=2000, seed=15)


def _owned(w: WorkerProc) -> tuple[int, int]:
    status, body = w.get("/health", timeout=5)
    assert status == 200, body
    return len(body["user_partitions"]), len(body["account_partitions"])


def test_scaled_1_3_1_mid_stream(scale_run: Run) -> None:
    run = scale_run
    w1 = run.worker("w1").start()
    wait_ready([w1])
    wait_until("the workers own their partitions", lambda: owning([w1]), 120)
    loader = run.load(rate=350)  # ~29 s of stream
    time.sleep(4)
    t_up = time.monotonic()
    extra = [run.worker("w2").start(), run.worker("w3").start()]
    wait_ready(extra)
    wait_until("three workers share the partitions",
               lambda: all(_owned(w)[0] > 0 for w in [w1, *extra]), timeout=60)  # fmt: skip
    up_s = time.monotonic() - t_up
    time.sleep(4)
    t_down = time.monotonic()
    for w in extra:
        w.stop()  # scaling down: SIGTERM, as a scheduler does
    assert all(w.proc is not None and w.proc.returncode == 0 for w in extra)
    wait_until("one worker owns every partition again",
               lambda: _owned(w1) == (PARTITIONS, PARTITIONS), timeout=90)  # fmt: skip
    down_s = time.monotonic() - t_down
    run.wait_load(loader)
    outcome = run.snapshot_equals_replay()
    run.report("scale_1_3_1", scale_up_s=round(up_s, 1), scale_down_s=round(down_s, 1), **outcome)


# ---- 5. a burst 10x the sustained rate ---------------------------------------------------------------

SUSTAINED = 250  # records/s
BURST_S = 6  # seconds at 10x
CALM_S = 4  # seconds at the sustained rate before and after
# The bound on the worker's RSS, from its settings rather than from the backlog: the interpreter
# and libraries (~70 MiB), the entity state (grows with users, not with lag: a few MiB here),
# one intake fetch (aiokafka's fetch_max_bytes, 50 MiB), one fetch of Faust's consumer (50 MiB),
# the producer's batches (1 MiB per partition in flight, 16 here), plus headroom.
RSS_BOUND_MIB = 300


@pytest.fixture
def burst_run(fault_stack: FaultStack, tmp_path: Path) -> Iterator[Run]:
    records = SUSTAINED * (2 * CALM_S + 10 * BURST_S)
    yield from make_run(fault_stack, tmp_path, "burst", records=records, users=3000, seed=16)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _lag_metric(w: WorkerProc) -> float:
    from tests.integration.live_harness import metric_sums

    sums = metric_sums([w])
    return sum(v for (n, _), v in sums.items() if n == "engagement_consumer_lag_records")


def test_burst_10x_sustained_rate(burst_run: Run) -> None:
    """The sustained rate, 10x for a few seconds, the sustained rate again, into one worker:
    the records behind (produced - counted) grow and drain to 0, RSS stays under the bound,
    nothing is dropped."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.topics import PRODUCT_EVENTS, SURVEY_ANSWERS

    run = burst_run
    lines = run.data.read_bytes().splitlines(keepends=True)
    calm, burst = SUSTAINED * CALM_S, 10 * SUSTAINED * BURST_S
    parts = [lines[:calm], lines[calm : calm + burst], lines[calm + burst :]]
    files = []
    for i, chunk in enumerate(parts):
        f = run.tmp / f"part{i}.jsonl"
        f.write_bytes(b"".join(chunk))
        files.append(f)
    w = run.worker("w1").start()
    wait_ready([w])
    wait_until("the worker owns its partitions", lambda: owning([w]), 120)
    assert w.proc is not None
    pid = w.proc.pid
    rss0 = _rss_mib(pid)
    samples: list[tuple[float, float, float]] = []  # (rss MiB, records behind, lag metric)
    done = threading.Event()
    tps = [TopicPartition(run.prefix + t, p) for t in (PRODUCT_EVENTS, SURVEY_ANSWERS)
           for p in range(PARTITIONS)]  # fmt: skip

    async def sample() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=run.stack.bootstrap)
        await consumer.start()
        try:
            while not done.is_set():
                with contextlib.suppress(OSError, AssertionError):
                    produced = sum((await consumer.end_offsets(tps)).values())
                    counted = await asyncio.to_thread(_counted, [w])
                    lag = await asyncio.to_thread(_lag_metric, w)
                    samples.append((_rss_mib(pid), produced - counted, lag))
                await asyncio.sleep(0.5)
        finally:
            await consumer.stop()

    sampler = threading.Thread(target=lambda: asyncio.run(sample()), daemon=True)
    sampler.start()
    try:
        for f, rate in zip(files, (SUSTAINED, 10 * SUSTAINED, SUSTAINED), strict=True):
            run.wait_load(run.load(f, rate=rate))
        t_end = time.monotonic()
        outcome = run.snapshot_equals_replay()
        drained = time.monotonic() - t_end
        wait_until("the consumer lag of /metrics drains to 0", lambda: _lag_metric(w) == 0, 30)
    finally:
        done.set()
        sampler.join(10)
    assert len(samples) > 10, samples
    peak_behind = max(s[1] for s in samples)
    peak_rss = max(s[0] for s in samples)
    rss_end = _rss_mib(pid)
    run.report("burst_10x", sustained_rate=SUSTAINED, burst_rate=10 * SUSTAINED, burst_s=BURST_S,
               peak_records_behind=peak_behind, peak_lag_metric=max(s[2] for s in samples),
               rss_start_mib=round(rss0), rss_peak_mib=round(peak_rss), rss_end_mib=round(rss_end),
               rss_bound_mib=RSS_BOUND_MIB, drained_after_last_record_s=round(drained, 1),
               **outcome)  # fmt: skip
    assert peak_behind > 0, "the burst put the worker behind"
    assert peak_rss < RSS_BOUND_MIB, (peak_rss, RSS_BOUND_MIB)
