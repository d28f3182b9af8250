"""`engagement top` without a worker: /metrics parsing, and what a frame says when the worker
answers 503 (from a local HTTP stub that answers like a worker during a rebalance)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engagement_cli.cmd_top import Sample, parse_metrics, read, render

METRICS = """\
# TYPE engagement_records_processed counter
engagement_records_processed_total 1500.0
# TYPE engagement_consumer_lag_records gauge
engagement_consumer_lag_records{stage="intake",topic="product-events",partition="0"} 7.0
engagement_consumer_lag_records{stage="intake",topic="product-events",partition="1"} 3.0
engagement_consumer_lag_records{stage="users",topic="engagement-batches",partition="0"} 2.0
"""


@pytest.fixture
def stub() -> Iterator[str]:
    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/snapshot"):
                body = json.dumps({"error": "not every partition answered exactly once",
                                   "missing_user_partitions": [3]}).encode()  # fmt: skip
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
            else:
                body = METRICS.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_parse_metrics_sums_lag_per_stage() -> None:
    processed, lag = parse_metrics(METRICS)
    assert processed == 1500.0
    assert lag == {"intake": 10.0, "users": 2.0}


def test_a_503_is_shown_with_its_reason_and_the_last_values_stale(stub: str) -> None:
    cur = read(stub, 5)
    assert cur.snapshot is None and "HTTP 503" in cur.snapshot_error
    last = {"as_of": "2026-11-20T12:00:00Z", "dau": 12, "wau": 30, "mau": 44}
    prev = Sample(at=cur.at - 2.0, processed=1000.0)
    frame = render(stub, 1.0, cur, prev, last, color=False)
    assert "snapshot unavailable" in frame and "user partitions [3]" in frame
    assert "retrying every 1s; values below are stale" in frame
    assert "DAU 12" in frame and "MAU 44" in frame
    assert "records/s 250.0" in frame  # (1500 - 1000) / 2 s
    assert "lag intake 10  users 2" in frame


def test_once_shows_records_per_second_from_two_reads(capsys: pytest.CaptureFixture[str]) -> None:
    """`top --once` reads the worker's counter twice, --interval apart: records/s has a value
    (it showed "-" while the demo's generator ran)."""
    served = {"n": 0}

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/snapshot"):
                body = json.dumps({"as_of": "2026-11-20T12:00:00Z", "dau": 1}).encode()
            else:  # 100 more records processed at each read of /metrics
                served["n"] += 1
                body = METRICS.replace("1500.0", f"{1500 + 100 * served['n']}.0").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        from engagement_cli.cli import main

        assert main(["top", "--once", "--interval", "0.5", "--url",
                     f"http://127.0.0.1:{srv.server_address[1]}"]) == 0  # fmt: skip
    finally:
        srv.shutdown()
        srv.server_close()
    out = capsys.readouterr().out
    assert served["n"] == 2
    m = re.search(r"records/s ([0-9.,]+)", out)
    assert m and 100 <= float(m.group(1).replace(",", "")) <= 200, out  # 100 in ~0.5 s
    assert "processed 1,700" in out


def test_ctrl_c_quits_even_when_started_with_sigint_ignored() -> None:
    """A background job of a script starts with SIGINT ignored, and Python leaves it so: top
    installs its own handler, so Ctrl-C in its terminal still quits (exit 0)."""
    import signal
    import sys
    from pathlib import Path

    import pexpect

    repo = Path(__file__).resolve().parents[2]
    top = pexpect.spawn(
        sys.executable,
        ["-m", "engagement_cli", "top", "--url", "http://127.0.0.1:9", "--interval", "0.5"],
        cwd=str(repo),
        dimensions=(40, 200),
        timeout=30,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        top.expect("cannot reach the worker")
        top.expect("retrying every 0.5s")
        top.sendintr()
        top.expect(pexpect.EOF, timeout=15)
        top.close()
        assert top.exitstatus == 0, top.exitstatus
    finally:
        if top.isalive():
            top.terminate(force=True)
