"""The values of one metric over entities (times to first value, health scores), as a partial
holds them: the runs the partitions produced, merged without copying.

A snapshot needs few things of such a list: its length, an order statistic (the median time to
first value) and an exact sum (the average health); /metrics needs its histogram. Joining the
lists of every partition and sorting them cost 40 ms at a million users, and summing the health
scores with `math.fsum` 10 ms, on each /snapshot. Here merging keeps each partition's run as it
came (a list, or an `array` the compiled core made in one block), the order statistic is
selected across sorted runs with a few hundred binary searches, and the sum is `math.fsum` of
each run's *sum terms*: any floats whose exact sum is the exact sum of the run's values. The
Python engine's terms are the values themselves; the core's are the partials of Shewchuk's
algorithm, a handful of floats (`engagement_native.sum_terms`). `math.fsum` rounds the exact
sum of its inputs once, so both give the same float.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any


class Distribution:
    """A multiset of numbers kept as runs (sequences), each with its sum terms.

    Built empty (or from one list) by the Python engine, which appends to its run and sorts it;
    a partition of the compiled core hands over one run (`from_runs`). `merge` takes another's
    runs. Equality is as multisets."""

    __slots__ = ("runs", "terms")

    def __init__(self, values: list[Any] | None = None) -> None:
        run: list[Any] = [] if values is None else values
        self.runs: list[Sequence[Any]] = [run]
        # the same list: what is appended to the run is among its terms
        self.terms: list[Sequence[float]] = [run]

    @classmethod
    def from_run(cls, values: Sequence[Any], terms: Sequence[float] | None = None) -> Distribution:
        """One run; `terms` (floats whose exact sum is the values' exact sum) default to the
        values."""
        d = cls()
        d.runs = [values]
        d.terms = [values if terms is None else terms]
        return d

    def append(self, x: Any) -> None:
        """Add a value to the first run, the one this Distribution was made with (the Python
        engine building its partition's run); never to a run that `merge` took from another."""
        run = self.runs[0]
        assert isinstance(run, list)
        run.append(x)

    def sort(self) -> None:
        """Sort each run (the order statistics select across sorted runs)."""
        for i, run in enumerate(self.runs):
            if isinstance(run, list):
                run.sort()
            else:
                self.runs[i] = sorted(run)

    def merge(self, other: Distribution) -> None:
        for run, terms in zip(other.runs, other.terms, strict=True):
            if len(run):
                self.runs.append(run)
                self.terms.append(terms)

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def __bool__(self) -> bool:
        return any(len(r) for r in self.runs)

    def __iter__(self) -> Iterator[Any]:
        return chain.from_iterable(self.runs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Distribution):
            return NotImplemented
        return sorted(self) == sorted(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Distribution({sorted(self)!r})"

    def fsum(self) -> float:
        """`math.fsum` of every value (the sum correctly rounded)."""
        return math.fsum(chain.from_iterable(self.terms))

    def kth_smallest(self, k: int) -> Any:
        """The value of rank k (0-based) in ascending order: `sorted(self)[k]`, for sorted runs.

        The answer is the least value v with more than k values <= v. For each run, the least of
        its values with that property is found by a binary search (the count only grows along a
        sorted run); the least of those over the runs is the answer."""
        runs = [r for r in self.runs if len(r)]
        if not 0 <= k < sum(len(r) for r in runs):
            raise IndexError(k)
        best: Any = None
        for run in runs:
            lo, hi = 0, len(run)
            while lo < hi:
                mid = (lo + hi) // 2
                v = run[mid]
                if sum(bisect.bisect_right(r, v) for r in runs) > k:
                    hi = mid
                else:
                    lo = mid + 1
            if lo < len(run) and (best is None or run[lo] < best):
                best = run[lo]
        return best
