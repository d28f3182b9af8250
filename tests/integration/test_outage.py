"""When the broker is gone (issue 13): the fault suite's private stack (tests/integration/
test_faults.py), a loaded worker, `engagement load` and `engagement simulate --live`.

1. The broker stopped for good: over 15 s each process logs less than a line a second and uses
   less than 10% of a core; /health says live, not ready, Kafka unreachable; /metrics says
   `engagement_kafka_reachable 0`; SIGTERM stops each within 20 s with its documented exit
   code and line (docs/operations.md, "When the broker is gone").
2. The broker back after 60 s: the worker (which never exits) resumes by itself, the load
   completes (exit 0), /snapshot equals the replay of what was sent; the generator resumes
   and stops with exit 0 on SIGTERM.

Run with the rest of the fault suite (markers `integration`, `faults`); FAULTS_* ports as there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.live_harness import REPO, metric_sums, wait_ready
from tests.integration.test_faults import (  # the private stack and the per-test run
    FaultStack,
    Run,
    _create_topics,
    fault_stack,  # noqa: F401 (a fixture)
    make_run,
    owning,
    processed,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(420)]

SAMPLE_S = 15.0
MAX_LINES_PER_S = 1.0  # "at most once every few seconds", with room for a transition line
MAX_CPU_PCT = 10.0  # of one core
STOP_WITHIN_S = 20.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def generator(run: Run) -> tuple[subprocess.Popen[bytes], Path]:
    """`engagement simulate --live` at 50 records/s into topics of its own (the test's replay
    covers only the dataset's topics)."""
    prefix = run.prefix + "gen."
    _create_topics(run.stack.bootstrap, prefix)
    log = run.tmp / "simulate.log"
    args = [sys.executable, "-m", "engagement_cli", "simulate", "--bootstrap", run.stack.bootstrap,
            "--prefix", prefix, "--live", "--rate", "50", "--duration", "1h", "--users", "300",
            "--progress", "none"]  # fmt: skip
    with open(log, "ab") as fh:
        proc = subprocess.Popen(args, cwd=REPO, env=run.env, stdout=fh, stderr=fh,
                                stdin=subprocess.DEVNULL)  # fmt: skip
    run.loaders.append(proc)  # the run's teardown kills it if a test leaves it running
    return proc, log


def sigterm(proc: subprocess.Popen[bytes]) -> tuple[float, int]:
    """SIGTERM; (seconds until it exited, exit code); fails if it is still running after 20 s."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
        raise AssertionError(f"still running {STOP_WITHIN_S:g} s after SIGTERM") from None
    return time.monotonic() - t0, rc


def kafka_reachable(w: Any) -> float:
    sums = metric_sums([w])
    return sum(v for (n, _), v in sums.items() if n == "engagement_kafka_reachable")


# ---- 1. the broker stopped for good under a loaded worker --------------------------------------


@pytest.fixture
def gone_run(fault_stack: FaultStack, tmp_path: Path) -> Iterator[Run]:  # noqa: F811
    yield from make_run(fault_stack, tmp_path, "gone", records=20_000, users=2000, seed=21)


def test_broker_gone_for_good_under_load(gone_run: Run) -> None:
    run = gone_run
    w = run.worker("w1").start()
    wait_ready([w])
    wait_until("the worker owns its partitions", lambda: owning([w]), 120)
    loader = run.load(rate=400)  # a 50 s stream: still sending when the broker goes
    gen, gen_log = generator(run)
    wait_until("the stream is being processed", lambda: processed([w]) > 1000, 60, 0.2)
    run.stack.down("kafka")
    time.sleep(5)  # every client notices
    assert w.proc is not None
    procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {
        "worker": (w.proc, w.log),
        "load": (loader, run.tmp / "load.log"),
        "simulate": (gen, gen_log),
    }
    for name, (p, log) in procs.items():
        assert p.poll() is None, f"{name} exited during the outage:\n{log.read_text()[-3000:]}"
    first = {name: (lines(log), cpu_seconds(p.pid)) for name, (p, log) in procs.items()}
    t0 = time.monotonic()
    time.sleep(SAMPLE_S)
    dt = time.monotonic() - t0
    figures: dict[str, dict[str, Any]] = {}
    for name, (p, log) in procs.items():
        n0, c0 = first[name]
        figures[name] = {
            "log_lines_per_s": round((lines(log) - n0) / dt, 2),
            "cpu_pct": round(100 * (cpu_seconds(p.pid) - c0) / dt, 1),
        }
    # the worker keeps answering: live, not ready, Kafka unreachable
    status, body = w.get("/health")
    assert status == 200 and body["live"] and not body["ready"], body
    assert body["kafka_reachable"] is False, body
    assert w.get("/health?ready=1")[0] == 503
    assert kafka_reachable(w) == 0
    for name, (_, log) in procs.items():
        text = log.read_text(errors="replace")
        assert "unreachable" in text and "retrying every" in text, f"{name}:\n{text[-2000:]}"
    # SIGTERM: each stops within 20 s, with its documented exit code and line
    for name, (p, log) in procs.items():
        took, rc = sigterm(p)
        figures[name].update(sigterm_exit_s=round(took, 1), exit_code=rc)
        tail = log.read_text(errors="replace")[-3000:]
        if name == "worker":
            # 0 only when everything applied was committed; else 1 naming what was not
            assert rc in (0, 1), tail
            assert ("NOT committed" in tail) == (rc == 1), tail
            assert f"exit {rc}" in tail, tail
        elif name == "load":  # records were waiting for the broker
            assert rc == 1 and "were not acknowledged" in tail, tail
        else:
            assert rc == 1 and "did not acknowledge every record" in tail, tail
    run.report("broker_gone_for_good", sample_s=SAMPLE_S, **figures)
    for name, f in figures.items():
        assert f["log_lines_per_s"] <= MAX_LINES_PER_S, (name, f)
        assert f["cpu_pct"] <= MAX_CPU_PCT, (name, f)


# ---- 2. the broker back after 60 s ------------------------------------------------------------


@pytest.fixture
def back_run(fault_stack: FaultStack, tmp_path: Path) -> Iterator[Run]:  # noqa: F811
    yield from make_run(fault_stack, tmp_path, "back60", records=10_000, users=2000, seed=22)


def test_broker_back_after_60s(back_run: Run) -> None:
    run = back_run
    w = run.worker("w1").start()
    wait_ready([w])
    wait_until("the worker owns its partitions", lambda: owning([w]), 120)
    loader = run.load(rate=250)  # a 40 s stream: it ends while the broker is away
    gen, gen_log = generator(run)
    time.sleep(6)
    assert processed([w]) > 0, "the stream is being processed when the broker stops"
    run.stack.down("kafka")
    t_down = time.monotonic()
    n0 = lines(w.log)
    time.sleep(60)
    outage_lines = lines(w.log) - n0
    run.stack.up("kafka")
    t_back = time.monotonic()
    assert w.proc is not None and w.proc.poll() is None, w.tail()
    assert gen.poll() is None, gen_log.read_text()[-2000:]
    before = processed([w])
    resumed = wait_until("processing resumes", lambda: processed([w]) > before, timeout=120)
    wait_until("the worker is ready again", lambda: owning([w]), timeout=120)
    assert kafka_reachable(w) == 1
    assert "reachable again" in w.log.read_text(errors="replace")
    run.wait_load(loader)  # exit 0: the producer rode the outage out
    outcome = run.snapshot_equals_replay()
    exact_after = time.monotonic() - t_back
    wait_until("the generator resumes",
               lambda: "reachable again" in gen_log.read_text(errors="replace"), 60)  # fmt: skip
    gen_took, gen_rc = sigterm(gen)
    assert gen_rc == 0, gen_log.read_text()[-2000:]
    took, rc = sigterm(w.proc)
    assert rc == 0, w.tail()
    assert "everything applied was committed; exit 0" in w.tail(20)
    run.report("broker_back_after_60s", outage_s=round(t_back - t_down, 1),
               worker_log_lines_during_outage=outage_lines, resumed_after_s=round(resumed, 1),
               exact_after_s=round(exact_after, 1), worker_sigterm_exit_s=round(took, 1),
               generator_sigterm_exit_s=round(gen_took, 1), **outcome)  # fmt: skip
    assert outage_lines <= 60 / 3, f"{outage_lines} lines in a 60 s outage"
