"""The bench's /snapshot poller (bench/snapshot_poller.py), against a local HTTP server whose
answers the test scripts: it keeps the coverage of every 200 answer with the instant it arrived,
and leaves out the others; as a process it stops on SIGTERM and writes what it saw."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from bench import snapshot_poller

ROOT = Path(__file__).resolve().parents[2]


class _Scripted(BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, bytes]]] = []
    served: ClassVar[list[float]] = []

    def do_GET(self) -> None:
        i = len(self.served)
        status, body = self.answers[min(i, len(self.answers) - 1)]
        time.sleep(0.02)  # the answer takes a while: the arrival is after it
        self.served.append(time.time())
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Scripted.served = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/snapshot"
    srv.shutdown()
    srv.server_close()


def _cov(n: int) -> bytes:
    return json.dumps({"accepted": n, "coverage": {"t/0": n, "t/1": n - 1}}).encode()


def test_it_keeps_the_200_answers_with_their_arrival(server: str) -> None:
    _Scripted.answers = [(200, _cov(5)), (503, b'{"error": "not ready"}'), (200, _cov(9))]
    stop = threading.Event()
    got: dict[str, list[object]] = {}

    def poll() -> None:
        got.update(snapshot_poller.run(server, 0.01, stop))

    th = threading.Thread(target=poll)
    started = time.time()
    th.start()
    while len(_Scripted.served) < 3:
        time.sleep(0.005)
    stop.set()
    th.join(5)
    polls = got["polls"]
    covs = [c for _t, c in polls]  # type: ignore[misc]
    assert covs[:2] == [{"t/0": 5, "t/1": 4}, {"t/0": 9, "t/1": 8}]  # the 503 left out
    arrived = [t for t, _c in polls]  # type: ignore[misc]
    # each arrival is after the server answered it, and in order
    assert arrived[0] >= _Scripted.served[0] >= started
    assert arrived[1] >= _Scripted.served[2]
    assert arrived == sorted(arrived)
    assert all(0.02 <= t < 5 for t in got["took"])  # type: ignore[operator]


def test_as_a_process_it_stops_on_sigterm_and_writes_its_polls(server: str, tmp_path: Path) -> None:
    _Scripted.answers = [(200, _cov(3))]
    out = tmp_path / "polls.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.snapshot_poller", server, "0.01", str(out)], cwd=ROOT
    )
    deadline = time.time() + 30
    while len(_Scripted.served) < 2 and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    doc = json.loads(out.read_text())
    assert len(doc["polls"]) >= 2 and len(doc["took"]) == len(doc["polls"])
    assert all(c == {"t/0": 3, "t/1": 2} for _t, c in doc["polls"])


def test_it_refuses_a_wrong_command_line() -> None:
    assert snapshot_poller.main(["http://x"]) == 2
