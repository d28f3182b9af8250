"""agents/gather.py `_partials`: the customers' partials of a worker's account partitions are
computed on threads of their own (the compiled core scans without the GIL), and the answer is
the same, in the same order, as one partition after the other in the event loop's thread."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from typing import Any

import pytest

from agents.gather import _partials
from streams.config import Config
from streams.engine import Partial
from streams.live import Batch, LiveAccountPartition
from tests.unit.test_native_live import _native, micro_batches, partial_of, sim_records

MS = 1_000_000
HOUR = 3600 * 10**9


class Watched:
    """An engine whose `partial` notes the thread it ran on."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.threads: set[int] = set()
        self.scans_without_gil = getattr(engine, "scans_without_gil", False)

    def partial(self, t: int) -> Partial:
        self.threads.add(threading.get_ident())
        return self.engine.partial(t)  # type: ignore[no-any-return]


def account_partitions(cls: Any, n: int, seed: int) -> tuple[list[Any], int]:
    """Account partitions fed the facts of the simulate mix, and the newest record time (ns)."""
    nl = _native()
    cfg = Config()
    recs = sim_records(seed, 3000, users=400, days=20, partitions=n)
    users = [nl.NativeLiveUserPartition(cfg, p, n, n) for p in range(n)]
    accts = [cls(cfg, p) for p in range(n)]
    queues: dict[int, deque[Batch]] = {p: deque() for p in range(n)}
    for b in micro_batches(recs, random.Random(seed), 30):
        queues[b.partition % n].append(b)
    msg, amsg = [0] * n, [0] * n
    while any(queues.values()):
        for p in range(n):
            while queues[p]:
                out = users[p].apply(queues[p].popleft(), msg[p])
                msg[p] += 1
                for q, fw in out.forwards.items():
                    queues[q].extend(fw)
                for q, facts in out.facts.items():
                    accts[q].apply(facts, amsg[q])
                    amsg[q] += 1
    return accts, max(r[3] for r in recs) * MS


def test_threaded_partials_equal_the_scans_one_after_the_other() -> None:
    nl = _native()
    native, newest = account_partitions(nl.NativeLiveAccountPartition, 4, seed=11)
    python, _ = account_partitions(LiveAccountPartition, 4, seed=11)
    assert sum(len(a.accounts) for a in native) > 50
    main = threading.get_ident()
    for t in (newest, newest + HOUR + 1, newest + 40 * 24 * HOUR):
        watched = [Watched(a.engine) for a in native]
        got = [partial_of(x) for x in _partials(watched, t)]
        assert got == [partial_of(a.engine.partial(t)) for a in native]
        assert got == [partial_of(a.engine.partial(t)) for a in python]  # the definition
        assert got[0] != got[1]  # in order, partition by partition
        ran_on = set().union(*(w.threads for w in watched))
        assert main not in ran_on, "the scans ran in the caller's thread"


def test_the_python_engine_scans_in_the_callers_thread() -> None:
    # it holds the GIL throughout: threads would only add their cost
    python, newest = account_partitions(LiveAccountPartition, 3, seed=13)
    watched = [Watched(a.engine) for a in python]
    got = _partials(watched, newest)
    assert [partial_of(x) for x in got] == [partial_of(a.engine.partial(newest)) for a in python]
    assert set().union(*(w.threads for w in watched)) == {threading.get_ident()}


def test_one_partition_is_scanned_in_the_callers_thread() -> None:
    nl = _native()
    native, newest = account_partitions(nl.NativeLiveAccountPartition, 1, seed=12)
    watched = Watched(native[0].engine)
    [got] = _partials([watched], newest)
    assert partial_of(got) == partial_of(native[0].engine.partial(newest))
    assert watched.threads == {threading.get_ident()}


class SlowScan:
    """A customers' engine whose scan takes a while and notes when it ended."""

    scans_without_gil = True
    watermark = None

    def __init__(self, ended: list[int]) -> None:
        self.ended = ended

    def partial(self, t: int) -> Partial:
        time.sleep(0.05)
        self.ended.append(t)
        return Partial()


class FailingUsers:
    watermark = None

    def partial(self, t: int) -> Partial:
        raise RuntimeError("a user partition failed")


def test_the_customers_scans_are_over_before_local_partials_returns_even_on_an_error() -> None:
    # they start before the users' partials (which run meanwhile in the caller's thread); the
    # event loop must not apply a message to a partition still being scanned
    from types import SimpleNamespace

    from agents.gather import local_partials

    ended: list[int] = []
    accts = {p: SimpleNamespace(engine=SlowScan(ended)) for p in range(4)}
    users = {0: SimpleNamespace(engine=FailingUsers())}
    w = SimpleNamespace(user_parts=users, acct_parts=accts, assigned=lambda: ({0}, set(accts)))
    with pytest.raises(RuntimeError, match="a user partition failed"):
        local_partials(w, 7, wire=False)  # type: ignore[arg-type]
    assert ended == [7] * 4
