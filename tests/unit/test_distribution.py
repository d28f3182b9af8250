"""streams/distribution.py: a partial's list of values kept as the partitions' runs. Its order
statistic is `sorted(values)[k]`, its sum `math.fsum(values)`, whatever the runs; the compiled
core's sum terms (Shewchuk's partials) give the same `math.fsum` as the values; and a partial
with them goes over the wire (`/partials`) and back, from a worker of an older release too."""

from __future__ import annotations

import math
import random
import sys
from array import array
from fractions import Fraction
from typing import Any

import pytest

from streams.config import Config
from streams.distribution import Distribution
from streams.engine import Partial, finalize, partial_from_json, partial_to_json
from tests.unit.test_native_live import _native


def random_runs(rng: random.Random) -> list[list[Any]]:
    runs: list[list[Any]] = []
    for _ in range(rng.randint(1, 9)):
        n = rng.choice([0, 1, 2, rng.randint(0, 60)])
        pool = rng.choice([3, 50, 10**12])  # few distinct values: many ties
        run: list[Any] = [rng.randint(-pool, pool) for _ in range(n)]
        if rng.random() < 0.3:
            run += [Fraction(rng.randint(-pool * 3, pool * 3), 3) for _ in range(rng.randint(0, 5))]
        runs.append(sorted(run))
    return runs


def test_the_kth_smallest_across_sorted_runs_is_that_of_the_values_sorted() -> None:
    rng = random.Random(5)
    checked = 0
    for _ in range(400):
        runs = random_runs(rng)
        d = Distribution()
        for run in runs:
            as_array = rng.random() < 0.5 and all(type(x) is int for x in run)
            d.merge(Distribution.from_run(array("q", run) if as_array else run))
        values = sorted(x for r in runs for x in r)
        assert len(d) == len(values) and bool(d) == bool(values)
        for k in range(len(values)):
            assert d.kth_smallest(k) == values[k]
            checked += 1
        with pytest.raises(IndexError):
            d.kth_smallest(len(values))
    assert checked > 5000


def test_the_python_engines_run_appends_sorts_and_sums() -> None:
    d = Distribution()
    for x in (3, 1, 2, 1):
        d.append(x)
    d.sort()
    assert d.runs == [[1, 1, 2, 3]] and d.kth_smallest(1) == 1 and d.kth_smallest(3) == 3
    assert d.fsum() == 7.0
    assert d == Distribution([1, 2, 3, 1]) and d != Distribution([1, 2, 3])
    # appending after a merge adds to its own run, not to the one it took from another
    other = [5, 6]
    d.merge(Distribution(other))
    d.append(0)
    assert other == [5, 6] and sorted(d) == [0, 1, 1, 2, 3, 5, 6]


def _core() -> Any:
    _native()  # skipped without the core, failed in CI
    import engagement_native

    return engagement_native


def test_the_cores_sum_terms_give_the_fsum_of_the_values() -> None:
    nat = _core()
    rng = random.Random(9)
    big = 0
    for i in range(3000):
        kind = i % 4
        n = rng.randint(0, 300)
        if kind == 0:  # health scores
            xs = [rng.uniform(0, 100) for _ in range(n)]
        elif kind == 1:  # every magnitude, both signs
            xs = [
                rng.choice([-1, 1]) * rng.random() * 2.0 ** rng.randint(-1060, 1000)
                for _ in range(n)
            ]
        elif kind == 2:  # cancellations: x and -x, with a little left over
            base = [rng.uniform(-1e16, 1e16) for _ in range(n // 2)]
            xs = base + [-x for x in base] + [rng.choice([1e-300, 5e-324, 0.5, -0.0])]
            rng.shuffle(xs)
        else:  # near the overflow limit, without overflowing
            xs = [rng.choice([-1, 1]) * sys.float_info.max / rng.randint(4, 4000) for _ in range(n)]
        terms = nat.sum_terms(xs)
        assert terms is not None
        assert math.fsum(terms) == math.fsum(xs), (i, xs)
        assert math.copysign(1, math.fsum(terms)) == math.copysign(1, math.fsum(xs)) or not xs
        big += len(xs) > 100 and len(terms) < len(xs) // 4
    assert big > 500  # far fewer terms than values
    for special in ([math.inf], [1.0, math.nan], [sys.float_info.max, sys.float_info.max]):
        assert nat.sum_terms(special) is None  # the caller sums the values themselves


def test_a_partial_with_runs_goes_over_the_wire_and_back() -> None:
    p = Partial()
    p.ttfv.merge(Distribution.from_run(array("q", [1, 5, 9])))
    p.ttfv.merge(Distribution.from_run([2, Fraction(7, 3), 10**30]))
    p.health.merge(Distribution.from_run(array("d", [40.5, 0.1, 0.2]), [40.5, 0.30000000000000004]))
    p.health.merge(Distribution.from_run([99.0]))
    back = partial_from_json(partial_to_json(p))
    assert back == p
    assert back.ttfv.kth_smallest(2) == Fraction(7, 3) and back.health.fsum() == p.health.fsum()
    assert len(back.health) == 4
    # a worker of a release before Distribution sends flat lists, in no particular order
    old = partial_to_json(p)
    old["ttfv"] = [9, 1, 5, "7/3", 2, 10**30]
    old["health"] = [0.1, 99.0, 40.5, 0.2]
    from_old = partial_from_json(old)
    assert from_old == p and from_old.ttfv.kth_smallest(2) == Fraction(7, 3)
    cfg = Config()
    assert finalize(from_old, 10**18, cfg) == finalize(p, 10**18, cfg)
