"""A live view of the KPIs in the terminal, refreshed every second, for people without Grafana.

Shows what `/snapshot` says for all partitions (DAU/WAU/MAU and stickiness, CSAT/NPS/CES,
activation and retention, churn signals, customers at risk and health, the pipeline counters) and
what the worker's `/metrics` says about itself (records/s from the counter's delta between two
refreshes, consumer lag per stage). When the worker is down or cannot answer (503: Redis away, a
rebalance) the view says why, keeps the last values marked stale, and retries every interval.
`q` (or Ctrl-C) quits with exit code 0. When stdout is not a terminal the frames are printed one
after the other (no screen control), e.g. for logs; --once prints one frame and exits (exit 1 if
the worker could not answer); its records/s comes from two reads of /metrics --interval apart.

examples:
  engagement top
  engagement top --url http://10.0.0.5:6066 --interval 2
  engagement top --once                      # one frame, e.g. in a script or a bug report
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from agents.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from engagement_cli import client

CLEAR = "\x1b[H\x1b[2J"
ALT_ON, ALT_OFF = "\x1b[?1049h\x1b[?25l", "\x1b[?25h\x1b[?1049l"
BOLD, DIM, RED, RESET = "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[0m"


def _interval(raw: str) -> float:
    try:
        v = float(raw)
    except ValueError:
        v = -1.0
    if not 0.1 <= v <= 3600:
        raise argparse.ArgumentTypeError(f"--interval must be 0.1 to 3600 seconds, got {raw!r}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=None,
        help=f"the worker (env {client.ENV_URL}; {client.DEFAULT_URL})",
    )
    p.add_argument(
        "--interval", type=_interval, default=1.0, metavar="SECONDS", help="refresh period (1)"
    )
    p.add_argument("--once", action="store_true", help="print one frame and exit")


@dataclass
class Sample:
    """What one refresh read: the snapshot, the worker's counters and lags, or the errors."""

    at: float
    snapshot: dict[str, Any] | None = None
    snapshot_error: str = ""
    processed: float | None = None  # engagement_records_processed_total of this worker
    lag: dict[str, float] = field(default_factory=dict)  # stage -> records
    metrics_error: str = ""


def parse_metrics(text: str) -> tuple[float | None, dict[str, float]]:
    """(records processed by this worker, lag per stage) from a /metrics exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    processed: float | None = None
    lag: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "engagement_records_processed_total":
                processed = s.value
            elif s.name == "engagement_consumer_lag_records":
                stage = s.labels.get("stage", "?")
                lag[stage] = lag.get(stage, 0.0) + s.value
    return processed, lag


def read(url: str, timeout: float, snapshot: bool = True) -> Sample:
    """One refresh: the snapshot (unless `snapshot` is False) and the worker's /metrics."""
    s = Sample(at=time.monotonic())
    try:
        if snapshot:
            s.snapshot = client.snapshot(url, timeout=timeout)
    except client.WorkerError as exc:
        s.snapshot_error = str(exc)
    try:
        s.processed, s.lag = parse_metrics(client.metrics_text(url, timeout=timeout))
    except client.WorkerError as exc:
        s.metrics_error = str(exc)
    except ValueError as exc:
        s.metrics_error = f"/metrics is not a Prometheus exposition ({exc})"
    return s


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}%"


def _num(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v:.1f}{unit}"


def _int(v: Any) -> str:
    return "-" if v is None else f"{int(v):,}"


def render(
    url: str, interval: float, cur: Sample, prev: Sample | None, last_good: dict[str, Any] | None,
    color: bool = True, retrying: bool = True,
) -> str:  # fmt: skip
    """One frame (text lines). `last_good` is the last snapshot, shown stale on an error."""
    b, d, r, z = (BOLD, DIM, RED, RESET) if color else ("", "", "", "")
    snap = cur.snapshot or last_good
    lines = [f"{b}engagement top{z}  {url}  every {interval:g}s  (q quits)"]
    if cur.snapshot is None:
        lines.append(f"{r}snapshot unavailable: {cur.snapshot_error}{z}")
        if retrying:
            lines.append(
                f"{r}retrying every {interval:g}s{z}"
                + (f"{d}; values below are stale{z}" if snap else "")
            )
    else:
        lines.append(f"as of {snap['as_of'] if snap else '-'}")
    if snap is not None:
        g = snap.get
        sig = g("churn_signals_24h") or {}
        rej = g("rejected") or {}
        lines += [
            "",
            f"{b}ACTIVITY{z}    DAU {_int(g('dau'))}   WAU {_int(g('wau'))}   MAU {_int(g('mau'))}"
            f"   stickiness {_pct(g('stickiness_pct'))}",
            f"{b}SURVEYS{z}     CSAT 24h {_pct(g('csat_pct_24h'))} ({_int(g('csat_responses_24h'))} answers)"
            f"   NPS 30d {_num(g('nps_30d'))} ({_int(g('nps_responses_30d'))} answers)"
            f"   CES 7d {_num(g('ces_avg_7d'))}",
            f"{b}ONBOARDING{z}  first-week activation {_pct(g('first_week_activation_pct'))}"
            f"   return {_pct(g('first_week_return_pct'))}"
            f"   TTFV median {_num(g('ttfv_median_hours'), ' h')}",
            f"{b}RETENTION{z}   D1 {_pct(g('d1_retention_pct'))}   D7 {_pct(g('d7_retention_pct'))}"
            f"   D30 {_pct(g('d30_retention_pct'))}   subscription churn 30d {_pct(g('churn_rate_pct_30d'))}",
            f"{b}CHURN{z}       signals 24h: "
            + "  ".join(f"{k} {_int(v)}" for k, v in sig.items()),
            f"{b}CUSTOMERS{z}   at risk {_int(g('customers_at_risk'))}"
            f"   health avg {_num(g('health_avg'))}   subscribers {_int(g('subscribers'))}",
            f"{b}RECORDS{z}     accepted {_int(g('accepted'))}   duplicates {_int(g('duplicates'))}"
            f"   rejected {_int(sum(rej.values()))}"
            + (
                " (" + ", ".join(f"{k} {v}" for k, v in rej.items() if v) + ")"
                if any(rej.values())
                else ""
            ),
        ]
    lines.append("")
    if cur.metrics_error:
        lines.append(f"{b}WORKER{z}      {r}/metrics unavailable: {cur.metrics_error}{z}")
    else:
        rate = "-"
        if prev is not None and prev.processed is not None and cur.processed is not None:
            dt = cur.at - prev.at
            if dt > 0:
                rate = f"{max(0.0, cur.processed - prev.processed) / dt:,.1f}"
        lag = "  ".join(f"{k} {_int(v)}" for k, v in sorted(cur.lag.items())) or "-"
        lines.append(
            f"{b}WORKER{z}      records/s {rate}   processed {_int(cur.processed)}   lag {lag}"
        )
    return "\n".join(lines) + "\n"


class Keys:
    """Single key presses from a terminal (cbreak mode), restored on exit."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.saved: Any = None
        if sys.stdin.isatty():
            import termios
            import tty

            self.fd = sys.stdin.fileno()
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)

    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds`; True when q was pressed."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.fd is None:
                time.sleep(left)
                return False
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                ch = os.read(self.fd, 1)
                if ch in (b"q", b"Q") or not ch:
                    return True

    def restore(self) -> None:
        if self.fd is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def run(args: argparse.Namespace) -> int:
    try:
        url = client.worker_url(args.url)
    except client.WorkerError as exc:
        print(f"engagement top: {exc}", file=sys.stderr)
        return EXIT_USAGE
    timeout = max(2.0, min(10.0, 3 * args.interval))
    if args.once:
        # records/s is a difference: the worker's counter read twice, --interval apart
        first = read(url, timeout, snapshot=False)
        if first.processed is not None:
            time.sleep(max(0.0, args.interval - (time.monotonic() - first.at)))
        cur = read(url, timeout)
        before = first if first.processed is not None else None
        sys.stdout.write(render(url, args.interval, cur, before, None, False, False))
        return EXIT_OK if cur.snapshot is not None else EXIT_FAILURE
    tty = sys.stdout.isatty()
    # Ctrl-C quits even when the shell started us with SIGINT ignored (a background job of a
    # script ignores it, and Python then leaves it ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    keys = Keys()
    prev: Sample | None = None
    last_good: dict[str, Any] | None = None
    try:
        if tty:
            sys.stdout.write(ALT_ON)
        while True:
            cur = read(url, timeout)
            if cur.snapshot is not None:
                last_good = cur.snapshot
            frame = render(url, args.interval, cur, prev, last_good, color=tty)
            sys.stdout.write((CLEAR + frame) if tty else (frame + "\n"))
            sys.stdout.flush()
            if cur.processed is not None:
                prev = cur
            if keys.wait(max(0.0, args.interval - (time.monotonic() - cur.at))):
                return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        keys.restore()
        if tty:
            sys.stdout.write(ALT_OFF)
            sys.stdout.flush()
