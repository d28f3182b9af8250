"""Diagnosis: how many records/s one worker applies when they arrive live, at a fixed rate,
with nothing but /health polled (no /snapshot load).

usage: python bench/live_trickle.py [--rate 500] [--seconds 20] [--users 3000]

Starts one worker on a fresh topic prefix with empty state, sends `--rate` records/s of the
simulate mix for `--seconds` (bench/loadgen.py, paced), and prints the worker's
records_processed every second, then the applied rate. Needs the local stack. Deletes what it
created.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agents import admin  # noqa: E402
from bench.loadgen import BOOT, produce_paced  # noqa: E402
from bench.run import CONFIG_TOML, REDIS_URL, _cleanup  # noqa: E402
from streams.topics import TopicSettings, topic_specs  # noqa: E402
from tests.integration.live_harness import WorkerProc, wait_ready  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--users", type=int, default=3000)
    args = ap.parse_args()
    token = uuid.uuid4().hex[:8]
    prefix = f"bench-{token}."
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{token}-"))
    asyncio.run(admin.ensure_topics(BOOT, topic_specs(TopicSettings(prefix=prefix))))
    (tmp / "engagement.toml").write_text(CONFIG_TOML)
    env = {**os.environ, "ENGAGEMENT_TOPIC_PREFIX": prefix, "ENGAGEMENT_APP_ID": "bench",
           "ENGAGEMENT_DATA_DIR": str(tmp / "worker"), "REDIS_URL": REDIS_URL,
           "ENGAGEMENT_CONFIG": str(tmp / "engagement.toml"), "ENGAGEMENT_LOG_LEVEL": "warning",
           "KAFKA_BOOTSTRAP": BOOT, "PYTHONPATH": str(ROOT)}  # fmt: skip
    w = WorkerProc("trickle", env, tmp / "worker.log").start()
    try:
        wait_ready([w])
        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                _status, health = w.get("/health")
                samples.append((time.time(), int(health.get("records_processed", 0))))
                stop.wait(1)

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        sent = asyncio.run(produce_paced(prefix, args.rate, args.seconds, args.users, 7, 8))
        time.sleep(5)
        stop.set()
        th.join()
        t0 = samples[0][0]
        for t, n in samples:
            print(f"{t - t0:5.1f}s  {n:,} records applied")
        applied = samples[-1][1] - samples[0][1]
        span = samples[-1][0] - t0
        print(f"sent {sent.records:,} in {sent.seconds:.1f}s ({sent.records / sent.seconds:,.0f}/s); "
              f"applied {applied:,} in {span:.1f}s ({applied / span:,.0f}/s)")  # fmt: skip
    finally:
        w.stop()
        _cleanup(prefix, token)
        if not os.environ.get("KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
