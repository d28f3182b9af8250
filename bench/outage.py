"""Measure what a worker, `engagement load` and `engagement simulate --live` do while the broker
is gone (issue 13): log lines per second, CPU share, and how long SIGTERM takes to stop them.

It starts a private stack of its own (Kafka and Redis only, in .run/bench-outage/stack, on
ports below Linux's ephemeral range: OUTAGE_KAFKA_PORT=30692, controller 30693, Redis 30679;
docs/stack.md says why), stopped at the end. It starts a worker and feeds it with
`engagement load --rate` and `engagement simulate --live`, stops Kafka
(`deploy/local/stack-down.sh kafka`), samples each process for --seconds, sends each one
SIGTERM and times its exit (SIGKILL after --kill-after seconds), then starts Kafka again.

    python bench/outage.py                 # prints one line per process, and a JSON summary
    python bench/outage.py --seconds 15 --rate 500
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def line_count(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


CODE = [REPO]


class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with open(log, "ab") as fh:
            self.p = subprocess.Popen(args, cwd=CODE[0], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)  # fmt: skip

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, kill_after: float) -> tuple[float, int | None]:
        """SIGTERM, then the seconds until it exits and its exit code (None: SIGKILLed)."""
        if not self.alive():
            return 0.0, self.p.returncode
        t0 = time.monotonic()
        self.p.send_signal(signal.SIGTERM)
        try:
            rc: int | None = self.p.wait(kill_after)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(30)
            rc = None
        return time.monotonic() - t0, rc


STACK_ENV: dict[str, str] = {}


def stack_script(script: str, *args: str, services: str | None = None) -> None:
    env = dict(STACK_ENV)
    if services:
        env["STACK_SERVICES"] = services
    subprocess.run(["bash", str(REPO / "deploy/local" / script), *args], env=env, check=True,
                   cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True)  # fmt: skip


def health(port: int) -> dict[str, Any] | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as r:
            return dict(json.loads(r.read()))
    except Exception:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="sampling window (15)")
    ap.add_argument("--rate", type=float, default=500.0, help="engagement load --rate (500)")
    ap.add_argument("--kill-after", type=float, default=60.0, help="SIGKILL after (60 s)")
    ap.add_argument("--out", default=str(REPO / ".run" / "bench-outage"), help="logs go here")
    ap.add_argument(
        "--code",
        default=str(REPO),
        help="run the processes from this checkout (e.g. `git archive main | tar -x -C DIR`: "
        "the figures before a change); default this one",
    )
    a = ap.parse_args()
    CODE[0] = Path(a.code).resolve()
    kafka_port = int(os.environ.get("OUTAGE_KAFKA_PORT") or 30692)
    redis_port = int(os.environ.get("OUTAGE_REDIS_PORT") or 30679)
    drop = ("KAFKA_BOOTSTRAP", "SECURE", "STACK_SECURE", "STACK_SERVICES")
    STACK_ENV.update({k: v for k, v in os.environ.items() if k not in drop})
    STACK_ENV.update(
        ENGAGEMENT_RUN_DIR=str(Path(a.out) / "stack"), KAFKA_PORT=str(kafka_port),
        KAFKA_CONTROLLER_PORT=str(kafka_port + 1), REDIS_PORT=str(redis_port),
        PROMETHEUS_PORT=str(kafka_port - 2), ALERTMANAGER_PORT=str(kafka_port + 2),
        WORKER_PORT=str(redis_port - 13), STACK_SKIP_TOPICS="1",
        KAFKA_HEAP_OPTS="-Xms128m -Xmx512m",
    )  # fmt: skip
    stack_script("stack-up.sh", services="kafka redis")
    try:
        return measure(a, f"127.0.0.1:{kafka_port}", redis_port)
    finally:
        stack_script("stack-down.sh")


def measure(a: argparse.Namespace, bootstrap: str, redis_port: int) -> int:
    from agents import admin
    from streams.topics import TopicSettings, topic_specs

    out = Path(a.out) / time.strftime("%Y%m%dT%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"outage-{uuid.uuid4().hex[:6]}."
    import asyncio

    specs = topic_specs(TopicSettings(prefix=prefix, input_partitions=8))
    assert all(s.ok for s in asyncio.run(admin.ensure_topics(bootstrap, specs)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_")}
    from tests.integration.live_harness import free_port

    port = free_port()
    env.update(
        KAFKA_BOOTSTRAP=bootstrap, REDIS_URL=f"redis://127.0.0.1:{redis_port}/9",
        ENGAGEMENT_TOPIC_PREFIX=prefix, ENGAGEMENT_APP_ID=prefix.strip(".") + "-app",
        ENGAGEMENT_DATA_DIR=str(out / "worker"), ENGAGEMENT_WEB_PORT=str(port),
        ENGAGEMENT_WORKER_ID="outage-bench", ENGAGEMENT_LOG_LEVEL="info",
    )  # fmt: skip
    py = sys.executable
    data = out / "data.jsonl"
    subprocess.run([py, "-m", "engagement_cli", "simulate", "--users", "3000", "--duration", "2d",
                    "--rate", "1", "--max-records", "200000", "--seed", "5", "--progress", "none",
                    "--out", str(data)], cwd=REPO, env=env, check=True, capture_output=True)  # fmt: skip
    worker = Proc("worker", [py, "-m", "engagement_cli", "worker"], env, out / "worker.log")
    deadline = time.monotonic() + 120
    while not (h := health(port)) or not h.get("ready"):
        assert worker.alive() and time.monotonic() < deadline, (out / "worker.log").read_text()[
            -3000:
        ]
        time.sleep(0.5)
    procs = [
        worker,
        Proc("load", [py, "-m", "engagement_cli", "load", "--rate", str(a.rate), str(data)], env,
             out / "load.log"),
        Proc("simulate --live", [py, "-m", "engagement_cli", "simulate", "--kafka", "--live",
                                 "--rate", "50", "--duration", "1h", "--users", "300",
                                 "--progress", "none"], env, out / "simulate.log"),
    ]  # fmt: skip
    time.sleep(8)
    h = health(port) or {}
    print(
        f"outage: worker processed {h.get('records_processed')} records; stopping Kafka",
        file=sys.stderr,
    )
    stack_script("stack-down.sh", "kafka")
    time.sleep(5)  # the clients notice
    first = {p.name: (line_count(p.log), cpu_seconds(p.p.pid)) for p in procs if p.alive()}
    t0 = time.monotonic()
    time.sleep(a.seconds)
    dt = time.monotonic() - t0
    results: dict[str, Any] = {}
    for p in procs:
        if p.name not in first or not p.alive():
            results[p.name] = {"exited_during_outage": p.p.returncode}
            continue
        lines0, cpu0 = first[p.name]
        results[p.name] = {
            "log_lines_per_s": round((line_count(p.log) - lines0) / dt, 1),
            "log_bytes": p.log.stat().st_size,
            "cpu_percent": round(100 * (cpu_seconds(p.p.pid) - cpu0) / dt, 1),
        }
    results["worker"]["health_during_outage"] = health(port)
    for p in procs:
        if p.alive():
            took, rc = p.stop(a.kill_after)
            results[p.name].update(sigterm_exit_s=round(took, 1), exit_code=rc)
    for name, r in results.items():
        print(f"outage: {name}: {json.dumps(r)}")
    print(json.dumps({"logs": str(out), "seconds": a.seconds, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
