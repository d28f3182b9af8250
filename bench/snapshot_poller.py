"""Polls a worker's /snapshot on a schedule, in a process of its own, and records when each
answer arrived and the coverage it gave (bench/run.py's delay rows).

A process of its own because a poller thread in the bench's process shares the GIL with the
load generator: when that builds the offsets of a minute of records sent (1.2 million tuples)
the thread's answers were timestamped up to 1.5 s after they arrived, and the delays of the
last records sent counted that stall as the worker's (2026-12-06 23:33, bench/RESULTS.md).

usage: python -m bench.snapshot_poller URL INTERVAL_SECONDS OUT_JSON
Runs until SIGTERM or SIGINT, then writes OUT_JSON: {"polls": [[arrived (unix s),
{"topic/partition": last offset counted}], ...], "took": [seconds per answer, ...]}.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any


def poll_once(url: str, timeout: float) -> tuple[float, dict[str, int] | None, float]:
    """(the instant the answer arrived, its coverage or None if not 200, seconds it took)."""
    asked = time.time()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
            arrived = time.time()  # before parsing: the answer is there now
            status = r.status
    except (OSError, urllib.error.HTTPError):
        return time.time(), None, time.time() - asked
    if status != 200:
        return arrived, None, arrived - asked
    try:
        doc: Any = json.loads(body)
        cov = {str(k): int(v) for k, v in dict(doc.get("coverage", {})).items()}
    except (ValueError, TypeError, AttributeError):
        return arrived, None, arrived - asked
    return arrived, cov, arrived - asked


def run(url: str, interval: float, stop: threading.Event) -> dict[str, list[Any]]:
    polls: list[Any] = []
    took: list[float] = []
    while not stop.is_set():
        arrived, cov, secs = poll_once(url, timeout=30)
        if cov is not None:
            polls.append([arrived, cov])
            took.append(secs)
        stop.wait(interval)
    return {"polls": polls, "took": took}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    url, interval, out = argv[0], float(argv[1]), argv[2]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    result = run(url, interval, stop)
    with open(out, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
