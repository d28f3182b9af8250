"""Property tests: the streaming engine (streams/) against the naive batch oracle (tests/oracle.py).

Every snapshot key is compared recursively: counts exactly (ints), ratios with a relative and
absolute tolerance of 1e-6 (floats), nulls as nulls, `as_of` as a string. The engine must also
give the same snapshot whatever its number of partitions.

Deterministic: Hypothesis runs derandomized without an example database; the large cases use
the seeded generator.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from streams.config import Config
from streams.replay import replay_lines
from tests.oracle import snapshot
from tests.strategies import Scenario, generate, scenarios

TOLERANCE = 1e-6

PROPERTY_SETTINGS = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


def differences(engine: Any, oracle: Any, path: str = "") -> list[str]:
    """Human-readable differences between an engine snapshot and the oracle's (empty: equal)."""
    where = path or "<snapshot>"
    if isinstance(oracle, dict):
        if not isinstance(engine, dict):
            return [f"{where}: engine {engine!r}, oracle an object {oracle!r}"]
        out = []
        for key in sorted(set(oracle) | set(engine), key=str):
            if key not in engine:
                out.append(f"{path}.{key}: missing in engine (oracle {oracle[key]!r})")
            elif key not in oracle:
                out.append(f"{path}.{key}: unexpected in engine ({engine[key]!r})")
            else:
                out += differences(engine[key], oracle[key], f"{path}.{key}")
        return out
    if oracle is None:
        return [] if engine is None else [f"{where}: engine {engine!r}, oracle null"]
    if isinstance(oracle, str):
        return [] if engine == oracle else [f"{where}: engine {engine!r}, oracle {oracle!r}"]
    if isinstance(oracle, int) and not isinstance(oracle, bool):
        if type(engine) is int and engine == oracle:
            return []
        return [f"{where}: engine {engine!r}, oracle {oracle!r} (an exact count)"]
    if isinstance(oracle, float):
        if type(engine) is not float:
            return [f"{where}: engine {engine!r}, oracle {oracle!r} (a float ratio)"]
        if math.isclose(engine, oracle, rel_tol=TOLERANCE, abs_tol=TOLERANCE):
            return []
        return [f"{where}: engine {engine!r}, oracle {oracle!r}"]
    return [f"{where}: oracle value of unexpected type {oracle!r}"]


def engine_snapshot(
    lines: Iterable[bytes], config: dict[str, Any], as_of: str, partitions: int = 1
) -> dict[str, Any]:
    return replay_lines(
        list(lines), Config.from_mapping(dict(config)), as_of, partitions=partitions
    )


def minimize(scenario: Scenario, still_fails: Any, budget_s: float = 60.0) -> list[bytes]:
    """Greedy delta debugging over lines: a small sub-list of lines that still fails."""
    deadline = time.monotonic() + budget_s
    lines = list(scenario.lines)
    chunk = max(1, len(lines) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i = 0
        changed = False
        while i < len(lines):
            candidate = lines[:i] + lines[i + chunk :]
            if candidate != lines and still_fails(candidate):
                lines = candidate
                changed = True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return lines


def check(scenario: Scenario, partitions: int = 1, shrink: bool = False) -> None:
    expected = snapshot(scenario.lines, scenario.config, scenario.as_of)
    actual = engine_snapshot(scenario.lines, scenario.config, scenario.as_of, partitions)
    diffs = differences(actual, expected)
    if not diffs:
        return
    message = "\n".join(diffs[:30])
    if shrink:

        def fails(lines: list[bytes]) -> bool:
            want = snapshot(lines, scenario.config, scenario.as_of)
            got = engine_snapshot(lines, scenario.config, scenario.as_of, partitions)
            return bool(differences(got, want))

        small = minimize(scenario, fails)
        want = snapshot(small, scenario.config, scenario.as_of)
        got = engine_snapshot(small, scenario.config, scenario.as_of, partitions)
        message += (
            f"\n\nminimal example (config={scenario.config!r}, as_of={scenario.as_of!r}, "
            f"partitions={partitions}):\n"
            + "\n".join(f"  {line!r}" for line in small)
            + "\n"
            + "\n".join(differences(got, want))
        )
    pytest.fail(f"engine != oracle ({len(diffs)} differences):\n{message}", pytrace=False)


# ---------------------------------------------------------------------------------------------
# The properties
# ---------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(scenarios(max_stories=40))
def test_engine_matches_oracle(scenario: Scenario) -> None:
    check(scenario)


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(scenarios(max_stories=40))
def test_partitions_do_not_change_the_snapshot(scenario: Scenario) -> None:
    one = engine_snapshot(scenario.lines, scenario.config, scenario.as_of, partitions=1)
    for n in (3, 7):
        many = engine_snapshot(scenario.lines, scenario.config, scenario.as_of, partitions=n)
        diffs = differences(many, one)
        assert not diffs, f"partitions={n} vs 1:\n" + "\n".join(diffs)
    # a replay file read line by line keeps its newlines: JSON whitespace, same snapshot
    with_newlines = [line + b"\n" for line in scenario.lines]
    diffs = differences(
        engine_snapshot(with_newlines, scenario.config, scenario.as_of, partitions=3), one
    )
    assert not diffs, "lines ending with a newline:\n" + "\n".join(diffs)


@pytest.mark.parametrize("seed", range(12))
def test_seeded_medium(seed: int) -> None:
    check(generate(1000 + seed, stories=300), partitions=1 + seed % 4, shrink=True)


@pytest.mark.parametrize(("seed", "partitions"), [(1, 1), (2, 4)])
def test_seeded_large(seed: int, partitions: int) -> None:
    scenario = generate(seed, stories=7500)
    assert len(scenario.lines) >= 18_000
    check(scenario, partitions=partitions, shrink=True)


# ---------------------------------------------------------------------------------------------
# Disagreements the property tests found, kept as regression tests (both fixed in the engine)
# ---------------------------------------------------------------------------------------------


def test_other_topic_tombstone_is_skipped() -> None:
    # decisions.md #6: a null payload is a valid envelope; METRICS.md §4: records of other
    # topics are skipped. So nothing is counted (a tombstone is bad_json only on our topics).
    line = b'{"topic": "audit", "ts": 1772746566813, "key": null, "payload": null}'
    expected = snapshot([line], {}, "2026-03-06T00:00:00Z")
    assert expected["rejected"]["bad_json"] == 0
    check(Scenario([line], {}, "2026-03-06T00:00:00Z"))


def test_very_deep_envelope_line_does_not_crash() -> None:
    # "never crashing the worker": a line nested 100,000 levels deep in an envelope member.
    payload = '{"event_id": "e1", "type": "key_action", "user_id": "u1", "ts": 1795172400000}'
    line = (
        b'{"topic": "product-events", "x": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b', "ts": 1795172400000, "payload": '
        + json.dumps(payload).encode()
        + b"}"
    )
    out = engine_snapshot([line], {}, "2026-11-20T12:00:00Z")
    assert out["accepted"] + out["rejected"]["bad_json"] == 1
