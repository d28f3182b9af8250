"""agents/outage.py without a broker: settings, reachability and backoff, the log filter, what
is reported as not committed, and the stop's exit code."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from agents import outage
from agents.epoch import Epoch
from streams.errors import ConfigError


def test_settings_defaults_and_bounds() -> None:
    s = outage.OutageSettings.from_env({})
    assert (s.retry_seconds, s.start_timeout_seconds, s.stop_timeout_seconds) == (5, 60, 12)
    s = outage.OutageSettings.from_env(
        {outage.ENV_RETRY: "2", outage.ENV_START: "0", outage.ENV_STOP: "19"}
    )
    assert (s.retry_seconds, s.start_timeout_seconds, s.stop_timeout_seconds) == (2, 0, 19)
    for var, bad in ((outage.ENV_RETRY, "0.1"), (outage.ENV_STOP, "20"), (outage.ENV_START, "x")):
        with pytest.raises(ConfigError, match=var):
            outage.OutageSettings.from_env({var: bad})


def test_reachability_backoff_doubles_up_to_the_setting_and_resets() -> None:
    r = outage.Reachability(retry_seconds=1.0)
    a, b = ("h", 1), ("h", 2)
    assert r.reachable and r.down_seconds() == 0
    waits = []
    for _ in range(5):
        r.failed(a, ConnectionRefusedError(111, "Connection refused"))
        waits.append(round(r.wait_before(a), 1))
    assert waits == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert not r.reachable and r.last_error() == "connection refused" and r.down_count == 1
    r.succeeded(b)  # another broker answers: reachable, and `a` need not be waited for
    assert r.reachable and r.others_up(a)
    r.succeeded(a)
    assert r.wait_before(a) == 0 and r.reachable


def test_status_line() -> None:
    r = outage.Reachability(retry_seconds=5)
    r.failed(("127.0.0.1", 9092), ConnectionRefusedError(111, "x"))
    r.addresses[("127.0.0.1", 9092)].failing_since = time.monotonic() - 40
    r.suppressed = 1234
    assert outage.status_line("127.0.0.1:9092", r) == (
        "Kafka 127.0.0.1:9092 unreachable for 40 s (connection refused); retrying every 5 s; "
        "1,234 client log lines left out"
    )


def _record(name: str, msg: str, level: int = logging.ERROR, *args: Any) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_filter_repeats_once_per_template_and_counts_while_unreachable() -> None:
    r = outage.Reachability()
    f = outage.QuietKafkaLogs(r, repeat=0.3)
    tpl = "Unable connect to node with id %s: %s"
    shown = [
        f.filter(_record("aiokafka.client", tpl, logging.ERROR, 1, "refused")) for _ in range(50)
    ]
    assert shown.count(True) == 1
    time.sleep(0.35)
    rec = _record("aiokafka.client", tpl, logging.ERROR, 1, "refused")
    assert f.filter(rec) and "[and 49 more like it in 0.3 s]" in rec.getMessage()
    assert f.filter(_record("engagement.worker", "ours", logging.INFO))  # ours: untouched
    # unreachable: aiokafka's lines are only counted; Faust's still pass once per template
    r.failed(("h", 1), ConnectionRefusedError(111, "x"))
    assert not f.filter(_record("aiokafka.consumer.fetcher", "Failed fetch %s", logging.ERROR, 1))
    assert r.suppressed == 1
    assert f.filter(_record("faust.transport", "Timed out", logging.WARNING))
    assert f.filter(_record("aiokafka.client", "fatal", logging.CRITICAL))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_create_conn_waits_its_backoff_and_records_reachability() -> None:
    import aiokafka.client

    reach = outage.install_backoff(1.0)
    port = _closed_port()
    key = ("127.0.0.1", port)

    async def attempts() -> list[float]:
        took = []
        for _ in range(3):
            t0 = time.monotonic()
            with pytest.raises(OSError):
                await aiokafka.client.create_conn("127.0.0.1", port)
            took.append(time.monotonic() - t0)
        return took

    try:
        took = asyncio.run(attempts())
        assert took[1] >= 0.18 and took[2] >= 0.38, took  # 0.2 s, then 0.4 s
        assert reach.addresses[key].failures == 3
    finally:
        reach.addresses.pop(key, None)


@dataclass
class FakeCommitter:
    stage: str
    open: dict[int, Epoch] = field(default_factory=dict)
    commits: dict[int, Any] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)


class _Task:
    def __init__(self, done: bool) -> None:
        self._done = done

    def done(self) -> bool:
        return self._done


def test_uncommitted_names_open_running_and_failed_epochs() -> None:
    users = FakeCommitter("users")
    users.open[3] = Epoch(events=[object(), object()])
    users.open[4] = Epoch()  # nothing in it: nothing to commit
    users.commits = {0: _Task(False), 1: _Task(True)}
    accts = FakeCommitter("accounts", failed={5})
    assert outage.uncommitted([users, accts]) == [
        "users: 1 open epoch(s) (partitions 3; 2 messages), 1 commit(s) in flight (partitions 0)",
        "accounts: failed commits (partitions 5)",
    ]
    assert outage.uncommitted([FakeCommitter("users")]) == []


def test_stop_guard_exit_code() -> None:
    said: list[str] = []
    pending: list[str] = []
    guard = outage.StopGuard(lambda: list(pending), 12, say=said.append)
    guard.signum = 15
    assert guard.exit_code(0) == 0 and said[-1].endswith("committed; exit 0")
    pending.append("users: 1 commit(s) in flight (partitions 0)")
    assert guard.exit_code(0) == 1 and "NOT committed: users" in said[-1]
