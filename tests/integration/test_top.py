"""`engagement top` driven in a pseudo-terminal (pexpect) against a real worker: it says the worker
cannot be reached and keeps retrying, shows the snapshot's KPIs (checked against the replay of
the same records) once the worker runs, follows new records, reports records/s from /metrics,
and quits with exit code 0 on `q` and on Ctrl-C."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pexpect
import pytest

from tests.integration.conftest import Stack
from tests.integration.live_harness import REPO, wait_for_snapshot, wait_ready
from tests.integration.ops_helpers import CLOCK, env_for, ev, load, replay, small_dataset, worker

pytestmark = pytest.mark.integration

ANSI = re.compile(rb"\x1b\[[0-9;?]*[a-zA-Z]")


def _spawn(url: str, env: dict[str, str]) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable, ["-m", "engagement_cli", "top", "--url", url, "--interval", "0.5"],
        env=env, cwd=str(REPO), dimensions=(40, 200), timeout=60,
    )  # fmt: skip


def test_top_in_a_pty(stack: Stack, topic_prefix: str, redis_db: int, tmp_path: Path) -> None:
    env = env_for(stack, topic_prefix, redis_db)
    w = worker("w1", env, tmp_path)
    top = _spawn(w.url, env)
    log = tmp_path / "top.out"
    top.logfile_read = open(log, "wb")  # noqa: SIM115 - closed in finally
    try:
        # no worker yet: the reason, and it keeps retrying (two frames at least)
        top.expect("cannot reach the worker")
        top.expect("retrying every 0.5s")
        top.expect("cannot reach the worker")

        w.start()
        wait_ready([w])
        envs = small_dataset()
        load(envs, tmp_path / "in.jsonl", env)
        wait_for_snapshot([w], CLOCK, len(envs), timeout=60)
        exp = replay(envs, tmp_path / "all.jsonl")
        top.expect(
            rf"DAU {exp['dau']}\s+WAU {exp['wau']}\s+MAU {exp['mau']}\s+stickiness {exp['stickiness_pct']:.1f}%"
        )
        top.expect(rf"NPS 30d {exp['nps_30d']:.1f} \({exp['nps_responses_30d']} answers\)")
        top.expect(rf"at risk {exp['customers_at_risk']}\s+health avg {exp['health_avg']:.1f}")
        top.expect(rf"accepted {exp['accepted']}\s+duplicates 0\s+rejected 0")

        # new records: the view follows them
        more = [ev(f"n{i}", "page_view", f"u-new-{i}", 0.2, session_id="s") for i in range(3)]
        load(more, tmp_path / "more.jsonl", env)
        exp2 = replay(envs + more, tmp_path / "all2.jsonl")
        assert exp2["dau"] == exp["dau"] + 3
        top.expect(rf"DAU {exp2['dau']}\s+WAU {exp2['wau']}", timeout=60)
        top.expect(r"records/s [0-9.,]+\s+processed [0-9,]+\s+lag ")

        top.send("q")
        top.expect(pexpect.EOF, timeout=15)
        top.close()
        assert top.exitstatus == 0, top.exitstatus

        # the worker processed records between two frames: some frame shows a rate above 0
        frames = ANSI.sub(b"", log.read_bytes()).decode(errors="replace")
        rates = [float(x.replace(",", "")) for x in re.findall(r"records/s ([0-9.,]+)", frames)]
        assert rates and max(rates) > 0, rates[-10:]

        # Ctrl-C quits cleanly too
        top2 = _spawn(w.url, env)
        top2.expect(rf"DAU {exp2['dau']}")
        top2.sendintr()
        top2.expect(pexpect.EOF, timeout=15)
        top2.close()
        assert top2.exitstatus == 0, top2.exitstatus
    finally:
        if top.isalive():
            top.terminate(force=True)
        top.logfile_read.close()
        w.stop()
