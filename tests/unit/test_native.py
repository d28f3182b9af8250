"""The compiled replay engine (`streams.native`, Rust crate native/) against the pure-Python
`Replayer`, its reference: on every input, the same snapshot (exactly: types, floats, key order)
and the same calls of the reject sink (same order, same arguments). Helpers and input generators:
tests/unit/native_cases.py.

Covered: simulated streams with every kind of bad record, expiry forced or never, 1 and 4
partitions; every product value of test_replay_hotpath and the validation cases of test_records
under many envelopes (redeliveries, null payloads, other topics, blank/CRLF/non-JSON/non-UTF-8
lines, odd envelopes, escapes); the hostile records of tests/hostile.py; the Hypothesis scenarios
of tests/strategies.py; time zones with DST; custom event types in the configuration; the
chunking of `feed_bytes`; the hand-over to the Python engine (over-precise timestamps,
`to_replayer`); and `engagement replay --engine`.

The compiled module must be importable in CI (CI=1): there the tests fail without it; elsewhere
they are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streams.config import Config
from streams.replay import Replayer
from streams.timeutil import parse_as_of
from tests.strategies import Scenario, generate, scenarios
from tests.unit import native_cases as nc
from tests.unit.native_cases import compare, dumps_line, env, iso_ms, split_like_a_file
from tests.unit.records_builder import ms
from tests.unit.test_records import CASES as RECORD_CASES
from tests.unit.test_replay_hotpath import AS_OF as HOT_AS_OF
from tests.unit.test_replay_hotpath import RTS, VALUES

NATIVE_MISSING = (
    "streams.native (the compiled engagement_native module) is not importable: build it "
    "(see native/README or the Makefile) to run these tests"
)


@pytest.fixture(autouse=True)
def _native_required() -> None:
    if not nc.native_available():
        if os.environ.get("CI"):
            pytest.fail(NATIVE_MISSING + " (CI: the tests must run)")
        pytest.skip(NATIVE_MISSING)


def test_native_is_available() -> None:
    from streams import native

    assert native.available() is True
    assert (
        native.make_replayer(Config(), parse_as_of(HOT_AS_OF), engine="python").__class__
        is Replayer
    )


LONG_FRACTION = re.compile(rb"[0-9]\.[0-9]{10,}")
I64 = range(-(2**63), 2**63)


def may_hand_over(line: bytes) -> bool:
    """Whether a line may make the native engine hand over to Python: a number or timestamp
    with more than 9 fractional digits (an exact Fraction in Python), or an envelope integer
    outside 64 bits (Python's ints have no bound). Nothing else may (streams/native.py)."""
    if LONG_FRACTION.search(line):
        return True
    try:
        d = json.loads(line)
    except (ValueError, RecursionError):
        return False
    if type(d) is not dict:
        return False
    for name, scale in (("ts", 1_000_000), ("partition", 1), ("offset", 1)):
        v = d.get(name)
        if type(v) is int and v * scale not in I64:
            return True
    return False


def no_long_fraction(lines: list[bytes]) -> bool:
    """True when no line may make the native engine hand over (`may_hand_over`)."""
    return not any(may_hand_over(x) for x in lines)


# ---------------------------------------------------------------------------------------------
# 1. Simulated streams: a realistic mix with every kind of bad record; expiry
# ---------------------------------------------------------------------------------------------

_SIM_CACHE: dict[tuple[Any, ...], tuple[list[bytes], int]] = {}


def sim(seed: int, records: int, days: float, users: int, **kw: Any) -> tuple[list[bytes], int]:
    key = (seed, records, days, users, tuple(sorted(kw.items())))
    if key not in _SIM_CACHE:
        _SIM_CACHE[key] = nc.sim_lines(seed, records, days, users, **kw)
    return _SIM_CACHE[key]


SIM_CONFIG = Config()


@pytest.mark.parametrize(
    ("seed", "partitions", "sweep_every"), [(1, 1, 1000), (1, 4, 0), (2, 4, 1000), (2, 1, 0)]
)
def test_simulated_stream(seed: int, partitions: int, sweep_every: int) -> None:
    # 40 days, ~1,000 records a day: with sweep_every=1000 the state is swept about daily
    lines, last_ms = sim(seed, 40_000, 40, 400)
    as_of = parse_as_of(iso_ms(last_ms + 1))
    py, nat = compare(lines, SIM_CONFIG, as_of, partitions, sweep_every)
    assert nat.handed_over is False  # the whole file was the native engine's own work
    snap = py.snapshot
    assert snap["accepted"] > 30_000 and snap["duplicates"] > 100
    assert all(
        snap["rejected"][r] > 10 for r in ("too_large", "bad_json", "schema", "future", "too_late")
    )
    assert len(py.rejects) == sum(snap["rejected"].values())
    if sweep_every:  # expiry really happened: fewer users are held than without it
        held = sum(len(p.users) for p in py.engine.pipeline.users)
        unswept = nc.run_python(lines, SIM_CONFIG, as_of, partitions, 0)
        assert held < sum(len(p.users) for p in unswept.engine.pipeline.users)


def test_simulated_stream_as_of_in_the_middle() -> None:
    # records after the as-of are still read; the fold point stops at the as-of
    lines, _last_ms = sim(3, 20_000, 20, 300)
    as_of = parse_as_of(iso_ms(nc.START_MS + 10 * 86_400_000 + 12_345))
    for partitions, sweep_every, mode in ((1, 500, "line"), (3, 0, "iter")):
        py, nat = compare(lines, SIM_CONFIG, as_of, partitions, sweep_every, mode=mode)
        assert nat.handed_over is False
        assert py.snapshot["rejected"]["future"] > 0


# ---------------------------------------------------------------------------------------------
# 2. Hand-made values and envelopes
# ---------------------------------------------------------------------------------------------

SURVEY_BASE: dict[str, Any] = {
    "response_id": "r",
    "survey": "nps",
    "score": 9,
    "user_id": "u-1",
    "ts": "2026-11-20T09:59:00Z",
}

SURVEY_OVERRIDES: list[dict[str, Any]] = [
    {},
    {"score": 0},
    {"score": 10},
    {"score": 11},
    {"score": -1},
    {"score": 9.0},
    {"score": "9"},
    {"score": True},
    {"score": None},
    {"survey": "csat", "score": 0},
    {"survey": "csat", "score": 5},
    {"survey": "csat", "score": 1},
    {"survey": "csat", "score": 6},
    {"survey": "ces", "score": 7},
    {"survey": "ces", "score": 1},
    {"survey": "ces", "score": 8},
    {"survey": "NPS"},
    {"survey": "nps "},
    {"survey": ""},
    {"touchpoint": ""},
    {"touchpoint": "support"},
    {"touchpoint": "web"},
    {"touchpoint": "t" * 128},
    {"touchpoint": "t" * 129},
    {"touchpoint": 7},
    {"touchpoint": None},
    {"comment": 5},
    {"comment": ""},
    {"comment": "Merci, tr\u00e8s bien \U0001f600"},
    {"comment": "\u0000" * 10 + "x" * 1000},
    {"response_id": None},
    {"response_id": ""},
    {"response_id": "r" * 129},
    {"user_id": "\u00e9l\u00e8ve"},
    {"user_id": "u-2", "account_id": "acct-1"},
    {"account_id": ""},
    {"account_id": None},
    {"ts": 1_795_168_740_000},
    {"ts": "2026-11-20T09:59:00.123456789Z"},
    {"ts": "2026-11-20T10:59:00+01:00"},
    {"ts": "2026-11-20T11:00:00.000000001Z"},  # 1 ns into the future
    {"ts": "2026-11-18T10:00:00Z"},
    {"ts": "2026-11-18T09:59:59.999999999Z"},
    {"ts": 1.5},
    {"ts": None},
    {"extra": {"nested": [1, 2, {"x": None}]}, "score": 3},
]


def survey_values() -> list[Any]:
    out: list[Any] = [{**SURVEY_BASE, **o} for o in SURVEY_OVERRIDES]
    out += [
        '{"response_id":"r\\u00e9","survey":"nps","score":2,"user_id":"u-1","ts":"2026-11-20T09:00:00Z"}',
        '{"response_id":"r\\ud83d\\ude00","survey":"csat","score":2,"user_id":"u-1","ts":"2026-11-20T09:00:00Z"}',
        '{"response_id":"r\\ud800","survey":"csat","score":2,"user_id":"u-1","ts":"2026-11-20T09:00:00Z"}',
        '{"response_id":"r","survey":"nps","score":2,"score":12,"user_id":"u-1","ts":"2026-11-20T09:00:00Z"}',
        '{"response_id":"r","survey":"nps","score":12,"score":2,"user_id":"u-1","ts":"2026-11-20T09:00:00Z"}',
        '{"response_id":"r","survey":"nps","score":2,"user_id":"u-1","ts":"2026-11-20T09:00:00Z","x":1e400}',
        '{"response_id":"r","survey":"nps","score":2,"user_id":"u-1","ts":"2026-11-20T09:00:00Z"',
        '{"response_id":"r","survey":"nps","score":1'
        + "0" * 30
        + ',"user_id":"u-1","ts":"2026-11-20T09:00:00Z"}',
        "[]",
        "",
    ]
    return out


def product_values(include_long_fraction: bool) -> list[Any]:
    out: list[Any] = []
    for v in VALUES:
        if not include_long_fraction and LONG_FRACTION.search(
            (v if isinstance(v, str) else json.dumps(v)).encode()
        ):
            continue
        out.append(v)
    for data, _reason in RECORD_CASES:
        text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
        if include_long_fraction or not LONG_FRACTION.search(text.encode("utf-8", "surrogatepass")):
            out.append(text)
    return out


def with_id(value: Any, field: str, ident: str) -> str:
    if isinstance(value, dict):
        return json.dumps({**value, field: ident})
    return value


def value_lines(include_long_fraction: bool) -> list[bytes]:
    """Each value under several ids, record timestamps, keys and envelopes, with redeliveries."""
    out: list[bytes] = []
    offsets: dict[tuple[str, int], int] = {}
    rnd = random.Random(7)

    def next_offset(topic: str, part: int) -> int:
        offsets[(topic, part)] = offsets.get((topic, part), -1) + 1
        return offsets[(topic, part)]

    items = [("product-events", "event_id", v) for v in product_values(include_long_fraction)]
    items += [("survey-answers", "response_id", v) for v in survey_values()]
    rts_choices = [RTS, RTS + 10, RTS + 7_200_000, RTS - 50 * 3_600_000, RTS + 86_400_000 * 3]
    for i, (topic, field, value) in enumerate(items):
        first = with_id(value, field, f"i{i}")
        a = env(topic, first, RTS, partition=0, offset=next_offset(topic, 0), key="u-1")
        out.append(dumps_line(a))
        out.append(dumps_line(a, ascii_=False))  # a redelivery (same offset), raw UTF-8
        # the same value again under a new offset: a duplicate when it was accepted
        b = env(topic, first, RTS + 10, partition=0, offset=next_offset(topic, 0), key="u-1")
        out.append(dumps_line(b, ascii_=False))
        # an older offset (redelivered), with other content
        out.append(
            dumps_line(env(topic, with_id(value, field, f"old{i}"), RTS, partition=0, offset=0))
        )
        # no partition/offset, other keys and record timestamps, a shared id
        for ident in (f"j{i}", "same"):
            key = rnd.choice([None, "", "u-1", "u-2", "\u00fcn\u00ef", "k" * 300])
            out.append(
                dumps_line(
                    env(topic, with_id(value, field, ident), rnd.choice(rts_choices), key=key)
                )
            )
        # another partition, same offset as the first: not a redelivery
        out.append(
            dumps_line(
                env(
                    topic,
                    with_id(value, field, f"p{i}"),
                    RTS,
                    partition=1,
                    offset=offsets[(topic, 0)],
                )
            )
        )
        if i % 5 == 0:
            out.append(dumps_line(a, eol=b"\r\n"))  # redelivered again, CRLF
            out.append(dumps_line(env(topic, None, RTS, partition=2, offset=next_offset(topic, 2))))
    return out


P = json.dumps(
    {
        "event_id": "env",
        "type": "page_view",
        "user_id": "u-9",
        "ts": "2026-11-20T09:59:00Z",
        "session_id": "s",
    }
)
S = json.dumps(SURVEY_BASE)


def envelope_lines(representable_only: bool = True) -> list[bytes]:
    """Unusual envelopes around a valid payload: every one is decided exactly as Python does.
    representable_only: without the lines that `may_hand_over` (64-bit overflows)."""
    good = dumps_line(env("product-events", P, RTS, key="u-9"))
    pj = json.dumps(P)  # the payload as a JSON string
    sj = json.dumps(S)
    ts = str(RTS)
    raw: list[bytes] = [
        good,
        b"\n",
        b"\r\n",
        b"   \n",
        b"\t\n",
        b"",
        b"not json\n",
        b"{\n",
        b"}\n",
        b"[]\n",
        b"null\n",
        b"1\n",
        b'"str"\n',
        b"{}\n",
        b"\xef\xbb\xbf" + good,
        b"\xff" + good,
        b"  " + good[:-1] + b"  \r\n",
        good[:-1] + b" x\n",
        good[:-1] + good,
        good[:-1] + b"\x00\n",
        good[:-1] + b"\x1a\n",
        good.replace(b'"u-9"', b'"u-\xff9"', 1),  # raw invalid UTF-8 inside the payload string
        good.replace(b'"key": "u-9"', b'"key": "u\xc3"'),  # ... inside the key
        good.replace(b'"key": "u-9"', b'"key": "\xc3\xa9\xf0\x9f\x98\x80"'),  # raw UTF-8 key
        good.replace(b'"key": "u-9"', b'"key": "\\ud800"'),  # a lone surrogate key
        good.replace(b'"key": "u-9"', b'"key": "\\u00e9"'),
        good.replace(b'"key": "u-9"', b'"key": 5'),
        good.replace(b'"key": "u-9"', b'"key": null'),
        good.replace(b'"key": "u-9"', b'"key": ["u-9"]'),
        # unknown and duplicated envelope keys
        f'{{"topic": "product-events", "headers": [["a", "b"]], "tstype": "create", "x": {{"deep": [1, 2, {{}}]}}, "ts": {ts}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "other", "topic": "product-events", "ts": {ts}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "topic": "other", "ts": {ts}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": "x", "ts": {ts}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "payload": 1, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "payload": {pj}, "payload": null}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "partition": 0, "partition": 1, "offset": 5, "payload": {pj}}}\n'.encode(),
        f'{{"payload": {pj}, "ts": {ts}, "topic": "product-events", "key": "u-9"}}\n'.encode(),
        f'{{"topic":"product-events","ts":{ts},"payload":{pj}}}\n'.encode(),
        f'{{ "topic" : "product-events" ,\t"ts" : {ts} , "payload" : {pj} }}\n'.encode(),
        # the envelope's ts
        f'{{"topic": "product-events", "ts": {ts}.0, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}.5, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": 1.7951688e12, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": "{ts}", "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": true, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": null, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": NaN, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": -0, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": 0, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": -1, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {10**15}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {2**63 - 1}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {2**63}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {-(2**63)}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {10**30}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": 1{"0" * 400}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "x": 1e400, "y": 1{"0" * 400}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "x": NaN, "payload": {pj}}}\n'.encode(),
        # partition and offset
        f'{{"topic": "product-events", "ts": {ts}, "partition": null, "offset": 3, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "partition": 7, "offset": null, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "partition": 7, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "partition": -1, "offset": -5, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "partition": -1, "offset": -6, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "partition": 0, "offset": {2**70}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "partition": 0, "offset": {2**63 - 1}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "partition": {2**40}, "offset": 1, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "partition": "0", "offset": 1, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "partition": 0, "offset": 1.0, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "partition": true, "offset": 1, "payload": {pj}}}\n'.encode(),
        # topics
        f'{{"topic": "product\\u002devents", "ts": {ts}, "partition": 4, "offset": 1, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "survey\\u002danswers", "ts": {ts}, "payload": {sj}}}\n'.encode(),
        f'{{"topic": "survey-answers", "ts": {ts}, "partition": 4, "offset": 1, "payload": {sj}}}\n'.encode(),
        f'{{"topic": "survey-answers", "ts": {ts}, "partition": 4, "offset": 1, "payload": {sj}}}\n'.encode(),
        f'{{"topic": "Product-Events", "ts": {ts}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events ", "ts": {ts}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "", "ts": {ts}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "other", "ts": {ts}, "partition": 0, "offset": 1, "payload": "junk"}}\n'.encode(),
        f'{{"topic": "other", "ts": {ts}, "partition": 0, "offset": 1, "payload": "junk"}}\n'.encode(),
        f'{{"topic": "other", "ts": {ts}, "payload": null}}\n'.encode(),
        b'{"topic": "other", "ts": "x", "payload": null}\n',
        f'{{"topic": null, "ts": {ts}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": 1, "ts": {ts}, "payload": {pj}}}\n'.encode(),
        f'{{"ts": {ts}, "payload": {pj}}}\n'.encode(),
        # payloads
        f'{{"topic": "product-events", "ts": {ts}, "payload": null}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "key": "u-9", "partition": 3, "offset": 9, "payload": null}}\n'.encode(),
        f'{{"topic": "survey-answers", "ts": {ts}, "key": "u-9", "payload": null}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "payload": {P}}}\n'.encode(),  # an object
        f'{{"topic": "product-events", "ts": {ts}, "payload": 5}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "payload": ""}}\n'.encode(),
        f'{{"topic": "product-events", "ts": {ts}, "payload": "   "}}\n'.encode(),
        f'{{"topic": "survey-answers", "ts": {ts}, "payload": "{{}}"}}\n'.encode(),
        # escapes in the payload string (the envelope's JSON) and in the payload's own JSON
        dumps_line(env("product-events", P.replace('"u-9"', '"u-\u00e9"'), RTS)),
        dumps_line(env("product-events", P.replace('"u-9"', '"u-\u00e9"'), RTS), ascii_=False),
        dumps_line(env("product-events", P.replace('"env"', '"\U0001f600"'), RTS)),
        dumps_line(env("product-events", P.replace('"env"', '"e\\u00e9"'), RTS)),
        dumps_line(env("product-events", P.replace('"env"', '"e\\ud83d\\ude00"'), RTS)),
        dumps_line(env("product-events", P.replace('"env"', '"e\\ud800"'), RTS)),
        dumps_line(env("product-events", P.replace('"env"', '"e\\udfff\\ud800"'), RTS)),
        dumps_line(
            env("product-events", P.replace('"env"', '"e\\"q\\\\b\\/s\\b\\f\\n\\r\\t"'), RTS)
        ),
        dumps_line(env("product-events", P.replace('"env"', '"e\\u0000"'), RTS)),
        dumps_line(env("product-events", P.replace('"env"', '"e\\u0041"'), RTS)),
        dumps_line(env("product-events", P.replace('"page_view"', '"page\\u005fview"'), RTS)),
        dumps_line(env("product-events", P[:-1] + ', "note": "\\ud800"}', RTS)),
        dumps_line(env("product-events", P.replace('"env"', '"e\ud800"'), RTS)),  # lone, raw
        dumps_line(env("product-events", P.replace('"env"', '"e\udfff"'), RTS)),
        dumps_line(env("survey-answers", S.replace('"r"', '"r\ud83d"'), RTS)),
        dumps_line(env("product-events", P.replace('"env"', '"e\x00\x1f"'), RTS)),
        dumps_line(env("product-events", P.replace('"env"', '"e\u2028\u0085"'), RTS), ascii_=False),
        # escapes in the envelope keys themselves
        f'{{"t\\u006fpic": "product-events", "ts": {ts}, "payload": {pj}}}\n'.encode(),
        f'{{"topic": "product-events", "\\u0074s": {ts}, "payload": {pj}}}\n'.encode(),
        # deep nesting in an envelope member
        b'{"topic": "product-events", "x": '
        + b"[" * 5000
        + b"]" * 5000
        + f', "ts": {ts}, "payload": {pj}}}\n'.encode(),
        b'{"topic": "product-events", "x": '
        + b"[" * 63
        + b"]" * 63
        + f', "ts": {ts}, "payload": {pj}}}\n'.encode(),
        # CR alone, and a form feed, as whitespace or not
        good[:-1] + b"\r\r\n",
        b"\x0c" + good,
        good,  # the same line again, without partition/offset: a duplicate event
    ]
    return [x for x in raw if not (representable_only and may_hand_over(x))]


def handmade_lines(include_long_fraction: bool) -> list[bytes]:
    vals = value_lines(include_long_fraction)
    envs = envelope_lines(representable_only=not include_long_fraction)
    # interleave, so envelopes are read between values (and redeliveries of both kinds mix)
    out: list[bytes] = []
    step = max(1, len(vals) // len(envs))
    for i, e in enumerate(envs):
        out += vals[i * step : (i + 1) * step]
        out.append(e)
    out += vals[len(envs) * step :]
    return out


HANDMADE_AS_OFS = [HOT_AS_OF, "2026-11-20T09:59:30Z", "2026-11-24T00:00:00.5Z"]


@pytest.mark.parametrize("as_of", HANDMADE_AS_OFS)
@pytest.mark.parametrize(("partitions", "sweep_every"), [(1, 0), (3, 7), (1, 1)])
def test_handmade_values_and_envelopes(partitions: int, sweep_every: int, as_of: str) -> None:
    lines = handmade_lines(include_long_fraction=False)
    assert no_long_fraction(lines)
    py, nat = compare(lines, Config(), parse_as_of(as_of), partitions, sweep_every)
    assert nat.handed_over is False
    snap = py.snapshot
    assert snap["accepted"] > 100 and snap["duplicates"] > 50
    assert all(
        snap["rejected"][r] >= 5 for r in ("too_large", "bad_json", "schema", "future", "too_late")
    )


@pytest.mark.parametrize("mode", ["line", "bytes"])
def test_handmade_lines_one_by_one_and_as_bytes(mode: str) -> None:
    lines = handmade_lines(include_long_fraction=False)
    python_lines = split_like_a_file(b"".join(lines)) if mode == "bytes" else None
    _py, nat = compare(
        lines, Config(), parse_as_of(HOT_AS_OF), 2, 50, mode=mode, python_lines=python_lines
    )
    assert nat.handed_over is False


def test_handmade_with_over_precise_timestamps() -> None:
    lines = handmade_lines(include_long_fraction=True)
    assert not no_long_fraction(lines)
    compare(lines, Config(), parse_as_of(HOT_AS_OF), 3, 0)


def test_each_envelope_alone() -> None:
    # one at a time, so a difference names its line
    for line in envelope_lines(representable_only=False):
        for partitions in (1, 2):
            compare([line], Config(), parse_as_of(HOT_AS_OF), partitions, 0, shrink_budget_s=0)


# ---------------------------------------------------------------------------------------------
# 3. Hostile records (tests/hostile.py, the fuzz generator)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "partitions", "sweep_every"), [(20261123, 4, 0), (5, 1, 3000)])
def test_hostile_records(seed: int, partitions: int, sweep_every: int) -> None:
    lines, as_of_ms = nc.hostile_lines(seed, 25_000)
    as_of = parse_as_of(iso_ms(as_of_ms))
    py, nat = compare(lines, Config(), as_of, partitions, sweep_every)
    snap = py.snapshot
    assert snap["accepted"] > 5000 and snap["duplicates"] > 500
    assert all(
        snap["rejected"][r] > 20 for r in ("too_large", "bad_json", "schema", "future", "too_late")
    )
    if no_long_fraction(lines):
        assert nat.handed_over is False


@pytest.mark.parametrize("lateness", [0, 0.25, 1000])
def test_odd_allowed_lateness(lateness: float) -> None:
    lines, as_of_ms = nc.hostile_lines(31, 6000)
    config = Config.from_mapping({"allowed_lateness_hours": lateness})
    py, _ = compare(lines, config, parse_as_of(iso_ms(as_of_ms)), 2, 500)
    assert py.snapshot["accepted"] > (10 if lateness == 0 else 1000)
    assert py.snapshot["rejected"]["too_late"] > (1000 if lateness == 0 else 10)


# ---------------------------------------------------------------------------------------------
# 4. The Hypothesis scenarios of tests/strategies.py
# ---------------------------------------------------------------------------------------------

NATIVE_SETTINGS = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    phases=[Phase.explicit, Phase.generate],  # failures are minimised over lines by compare()
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)


def check_scenario(
    scenario: Scenario, partitions: int, sweep_every: int, mode: str, chunks: Any
) -> None:
    config = Config.from_mapping(dict(scenario.config))
    as_of = parse_as_of(scenario.as_of)
    if mode == "bytes":
        lines = [x + b"\n" for x in scenario.lines]
        python_lines = split_like_a_file(b"".join(lines))
        _, nat = compare(lines, config, as_of, partitions, sweep_every, mode, chunks, python_lines)
    else:
        _, nat = compare(scenario.lines, config, as_of, partitions, sweep_every, mode)
    if no_long_fraction(scenario.lines) and not LONG_FRACTION.search(scenario.as_of.encode()):
        assert nat.handed_over is False


@NATIVE_SETTINGS
@given(
    scenarios(max_stories=40),
    st.sampled_from([1, 3]),
    st.sampled_from([0, 1, 5, 200_000]),
    st.sampled_from(["feed", "iter", "line", "bytes"]),
    st.sampled_from([None, [1], [5, 17, 3], [4096]]),
)
def test_scenarios(
    scenario: Scenario, partitions: int, sweep_every: int, mode: str, chunks: Any
) -> None:
    check_scenario(scenario, partitions, sweep_every, mode, chunks)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_seeded_large_scenarios(seed: int) -> None:
    check_scenario(generate(seed, stories=3000), 1 + seed % 3, 1000, "feed", None)


# ---------------------------------------------------------------------------------------------
# 5. Time zones with DST (and a 45-minute offset)
# ---------------------------------------------------------------------------------------------

TYPES_CYCLE = [
    ("signup", None, None),
    ("page_view", "s", None),
    ("key_action", None, None),
    ("profile_completed", None, None),
    ("session_start", "s", None),
    ("impression", None, {"placement": "home"}),
    ("click", None, {"placement": "home"}),
    ("feature_used", None, {"feature": "search"}),
    ("onboarding_step", None, {"step": "welcome"}),
    ("onboarding_step", None, {"step": "tour"}),
    ("purchase", None, {"order_id": "o", "amount": 12.25}),
    ("return", None, {"order_id": "o"}),
    ("subscription_started", None, None),
    ("subscription_cancelled", None, None),
    ("ticket_opened", None, {"ticket_id": "t", "category": "billing"}),
    ("ticket_resolved", None, {"ticket_id": "t"}),
    ("social_interaction", None, {"action": "share"}),
    ("session_end", "s", None),
    ("custom_thing", None, None),
]


def timed_lines(start_ms: int, end_ms: int, step_ms: int, users: int, seed: int) -> list[bytes]:
    """Valid events every step_ms (record ts a little after the event), of every type, of
    `users` users, some in accounts, with survey answers; the odd one late."""
    rnd = random.Random(seed)
    out: list[bytes] = []
    n = 0
    t = start_ms
    while t < end_ms:
        n += 1
        uid = f"u{rnd.randrange(users)}"
        ets = t - (
            rnd.randrange(0, 3 * 3_600_000) if rnd.random() < 0.05 else rnd.randrange(0, 2000)
        )
        form = rnd.random()
        ts: Any = (
            iso_ms(ets)
            if form < 0.7
            else (ets if form < 0.9 else iso_ms(ets).replace("Z", "+00:00"))
        )
        if rnd.random() < 0.15:
            value: dict[str, Any] = {
                "response_id": f"r{n}", "survey": "nps", "score": rnd.randrange(11),
                "user_id": uid, "ts": ts,
            }  # fmt: skip
            if rnd.random() < 0.5:
                value["touchpoint"] = rnd.choice(["support", "email", "web"])
            topic = "survey-answers"
        else:
            typ, sid, props = TYPES_CYCLE[rnd.randrange(len(TYPES_CYCLE))]
            value = {"event_id": f"e{n}", "type": typ, "user_id": uid, "ts": ts}
            if sid:
                value["session_id"] = f"s-{uid}-{(t // 3_600_000) % 3}"
            if props:
                value["props"] = props
            topic = "product-events"
        if int(uid[1:]) % 3:
            value["account_id"] = f"acct{int(uid[1:]) % 4}"
        out.append(dumps_line(env(topic, json.dumps(value), t, key=uid)))
        if rnd.random() < 0.03 and out:
            out.append(out[rnd.randrange(len(out))])  # a copy of an earlier line: a duplicate
        t += step_ms
    return out


DST_CASES = [
    # America/New_York falls back on 2026-11-01 at 06:00Z (02:00 EDT -> 01:00 EST)
    (
        "America/New_York",
        "2026-10-30T00:00:00Z",
        "2026-11-03T12:00:00Z",
        ["2026-11-01T03:59:59.999Z", "2026-11-01T04:00:00Z", "2026-11-01T05:30:00Z",
         "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z", "2026-11-02T04:59:59Z",
         "2026-11-02T05:00:00Z", "2026-11-03T12:00:00Z"],
    ),
    # ... and springs forward on 2026-03-08 at 07:00Z
    (
        "America/New_York",
        "2026-03-06T00:00:00Z",
        "2026-03-10T00:00:00Z",
        ["2026-03-08T04:59:59Z", "2026-03-08T05:00:00Z", "2026-03-08T07:00:00Z",
         "2026-03-09T03:59:59Z", "2026-03-09T04:00:00Z", "2026-03-10T00:00:00Z"],
    ),
    # Lord Howe: half an hour, back on 2026-04-04 at 15:00Z, forward on 2026-10-03 at 15:30Z
    (
        "Australia/Lord_Howe",
        "2026-04-02T00:00:00Z",
        "2026-04-06T00:00:00Z",
        ["2026-04-04T12:59:59Z", "2026-04-04T13:00:00Z", "2026-04-04T15:00:00Z",
         "2026-04-05T13:29:59Z", "2026-04-05T13:30:00Z", "2026-04-06T00:00:00Z"],
    ),
    (
        "Australia/Lord_Howe",
        "2026-10-01T00:00:00Z",
        "2026-10-05T00:00:00Z",
        ["2026-10-03T13:29:59Z", "2026-10-03T13:30:00Z", "2026-10-03T15:30:00Z",
         "2026-10-04T12:59:59Z", "2026-10-04T13:00:00Z", "2026-10-05T00:00:00Z"],
    ),
    # Kathmandu: +05:45 all year
    (
        "Asia/Kathmandu",
        "2026-11-18T00:00:00Z",
        "2026-11-21T00:00:00Z",
        ["2026-11-19T18:14:59Z", "2026-11-19T18:15:00Z", "2026-11-21T00:00:00Z"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("tz", "start", "end", "as_ofs"), DST_CASES)
def test_time_zones(tz: str, start: str, end: str, as_ofs: list[str]) -> None:
    config = Config.from_mapping({"timezone": tz, "allowed_lateness_hours": 6})
    lines = timed_lines(ms(start), ms(end), 45_000, 40, seed=len(as_ofs))
    for i, as_of in enumerate(as_ofs):
        py, nat = compare(lines, config, parse_as_of(as_of), 1 + i % 2, (0, 100, 2000)[i % 3])
        assert nat.handed_over is False
        assert py.snapshot["accepted"] > 5000


@pytest.mark.parametrize("tz", ["America/New_York", "Australia/Lord_Howe"])
def test_simulated_stream_across_dst(tz: str) -> None:
    start = ms("2026-10-28T00:00:00Z") if tz == "America/New_York" else ms("2026-09-29T00:00:00Z")
    lines, last_ms = sim(4, 15_000, 10, 300, start_ms=start)
    config = Config.from_mapping({"timezone": tz})
    py, nat = compare(lines, config, parse_as_of(iso_ms(last_ms)), 2, 1000)
    assert nat.handed_over is False
    assert py.snapshot["dau"] > 0


# ---------------------------------------------------------------------------------------------
# 8. Custom event types in the configuration
# ---------------------------------------------------------------------------------------------

CUSTOM_CONFIG = {
    "timezone": "Europe/Berlin",
    "allowed_lateness_hours": 24,
    "inactive_events": ["notification_opened", "impression", "b" * 64, "signup"],
    "activation_events": ["file_uploaded", "a", "signup"],
    "value_event": "report_exported",
    "funnel_steps": ["welcome", "file_uploaded", "x" * 128, "tour"],
    "metrics": {"touchpoints": ["support", "web"], "features": ["search"]},
}


def custom_lines() -> list[bytes]:
    out: list[bytes] = []
    base = ms("2026-11-02T08:00:00Z")
    kinds = [
        ("a", None), ("b" * 64, None), ("a" * 64, None), ("a" * 65, None), ("file_uploaded", None),
        ("report_exported", {"anything": [1, {"x": None}]}), ("notification_opened", None),
        ("x1_", {"step": "tour"}), ("invite_sent", None), ("signup", None), ("key_action", None),
        ("onboarding_step", {"step": "x" * 128}), ("onboarding_step", {"step": "file_uploaded"}),
        ("onboarding_step", {"step": "welcome"}), ("onboarding_step", {"step": "tour"}),
        ("profile_completed", None), ("A", None), ("a-b", None), ("_a", None),
    ]  # fmt: skip
    rnd = random.Random(11)
    for n in range(3000):
        uid = f"c{rnd.randrange(60)}"
        typ, props = kinds[rnd.randrange(len(kinds))]
        rts = base + n * 120_000
        ets = rts - rnd.randrange(0, 20 * 3_600_000 if rnd.random() < 0.2 else 5000)
        v: dict[str, Any] = {
            "event_id": f"c{n % 2500}",
            "type": typ,
            "user_id": uid,
            "ts": iso_ms(ets),
        }
        if props is not None:
            v["props"] = props
        if rnd.random() < 0.5:
            v["account_id"] = f"acct{rnd.randrange(5)}"
        out.append(dumps_line(env("product-events", json.dumps(v), rts, key=uid)))
    return out


@pytest.mark.parametrize("partitions", [1, 3])
def test_custom_event_types(partitions: int) -> None:
    config = Config.from_mapping(CUSTOM_CONFIG)
    sim_part, last_ms = sim(6, 15_000, 12, 250)
    lines = custom_lines() + sim_part
    as_of = parse_as_of(iso_ms(max(last_ms, ms("2026-11-06T04:00:00Z"))))
    py, nat = compare(lines, config, as_of, partitions, 2000)
    assert nat.handed_over is False
    assert py.snapshot["accepted"] > 10_000
    # and a config without them: the same events, other metrics
    compare(lines, Config(), as_of, partitions, 0)


# ---------------------------------------------------------------------------------------------
# 6. feed_bytes: any chunking of a file gives the result of reading its lines
# ---------------------------------------------------------------------------------------------


def chunk_file() -> bytes:
    sim_part, _ = sim(7, 1500, 2, 100, start_ms=RTS - 86_400_000)
    vals = value_lines(False)[:600]
    rnd = random.Random(3)
    mixed = []
    for line in sim_part + vals + envelope_lines():
        mixed.append(line[:-1] + b"\r\n" if rnd.random() < 0.05 and line.endswith(b"\n") else line)
        if rnd.random() < 0.02:
            mixed.append(rnd.choice([b"\n", b"  \n", b"\r\n"]))
    rnd.shuffle(mixed)
    return b"".join(mixed)


ENDINGS = {
    "newline": b"",
    "no_newline": None,  # the last line without its b"\n"
    "crlf_last": b'{"topic": "product-events", "ts": 1795168800000, "payload": null}\r\n',
    "partial_blank": b"   ",
    "partial_garbage": b'{"topic": "product-events", "ts": 1',
    "partial_valid": dumps_line(env("product-events", P.replace('"env"', '"last"'), RTS))[:-1],
}


CHUNKINGS: list[Any] = [None, [65536], [7], [1, 2, 3, 500, 8191], "random"]


@pytest.mark.parametrize(
    ("chunks", "ending"),
    [(c, e) for i, e in enumerate(ENDINGS) for c in (CHUNKINGS[i % 5], CHUNKINGS[(i + 2) % 5])],
)
def test_feed_bytes_chunking(chunks: Any, ending: str) -> None:
    data = chunk_file()
    tail = ENDINGS[ending]
    data = data[:-1] if tail is None else data + tail
    if chunks == "random":
        rnd = random.Random(len(data))
        chunks = [rnd.choice([1, 2, 5, 64, 300, 4096, 70_000]) for _ in range(200)]
    python_lines = split_like_a_file(data)
    py, nat = compare(
        split_like_a_file(data),
        Config(),
        parse_as_of(HOT_AS_OF),
        2,
        300,
        "bytes",
        chunks,
        python_lines,
    )
    assert py.lines == len(python_lines) and nat.handed_over is False


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_feed_bytes_one_byte_at_a_time(ending: str) -> None:
    lines = envelope_lines() + value_lines(False)[:150]
    data = b"".join(lines)
    tail = ENDINGS[ending]
    data = data[:-1] if tail is None else data + tail
    python_lines = split_like_a_file(data)
    compare(
        split_like_a_file(data), Config(), parse_as_of(HOT_AS_OF), 1, 0, "bytes", [1], python_lines
    )


def test_feed_bytes_degenerate_inputs() -> None:
    for data in (b"", b"\n", b"\n\n\n", b"x", b"\r", b"\r\n", b"{}", b"\xff", b"\xff\n\xfe"):
        for chunks in (None, [1]):
            compare(
                split_like_a_file(data),
                Config(),
                parse_as_of(HOT_AS_OF),
                1,
                0,
                "bytes",
                chunks,
                split_like_a_file(data),
            )


def test_finish_twice_and_lines_after_finish() -> None:
    # finish() ends the input's last line; a second finish() has nothing more to do
    from streams import native

    a = env("product-events", P, RTS, key="u-9")
    data = dumps_line(a) + dumps_line(a)[:-1]
    calls: list[Any] = []
    n = native.NativeReplayer(
        Config(), parse_as_of(HOT_AS_OF), on_reject=lambda *x: calls.append(x)
    )
    n.feed_bytes(data)
    assert n.lines == 1
    n.finish()
    n.finish()
    py = nc.run_python(split_like_a_file(data), Config(), parse_as_of(HOT_AS_OF))
    assert n.lines == py.lines == 2
    assert nc.exact_differences(py.snapshot, n.snapshot()) == []
    assert py.snapshot["duplicates"] == 1


# ---------------------------------------------------------------------------------------------
# 7. Hand-over to the Python engine
# ---------------------------------------------------------------------------------------------


def with_precise_line(
    lines: list[bytes], at: int, digits: int = 21
) -> tuple[list[bytes], bytes, bytes]:
    """`lines` with, before index `at`, a valid page view whose ts has `digits` fractional
    digits (the last one 1); that line; and its twin with 9 digits (the last 1 dropped)."""
    rts = json.loads(lines[at])["ts"]
    t = rts - 1000
    head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1000)) + f".{t % 1000:03d}"

    def make(frac: str) -> bytes:
        value = {"event_id": "precise", "type": "page_view", "user_id": "u-precise",
                 "ts": head + frac + "Z", "session_id": "s"}  # fmt: skip
        return dumps_line(env("product-events", json.dumps(value), rts, key="u-precise"))

    line = make("0" * (digits - 4) + "1")
    assert LONG_FRACTION.search(line)
    return [*lines[:at], line, *lines[at:]], line, make("000000")


@pytest.mark.parametrize(("mode", "digits"), [("feed", 21), ("line", 30), ("bytes", 19)])
def test_finer_than_attoseconds_hands_over(mode: str, digits: int) -> None:
    # a timestamp the compiled core cannot hold (it counts attoseconds, 18 digits) makes it
    # hand its state over to the Python engine, which decides that line and all later ones
    base, last_ms = sim(8, 12_000, 6, 200)
    lines, line, twin = with_precise_line(base, len(base) // 2, digits)
    lines.append(line)  # and again later: a duplicate of an event stored with a Fraction instant
    as_of = parse_as_of(iso_ms(last_ms))
    python_lines = split_like_a_file(b"".join(lines)) if mode == "bytes" else None
    py, nat = compare(lines, Config(), as_of, 2, 1000, mode, [4096], python_lines)
    assert nat.handed_over is True
    # it was accepted and deduplicated as its 9-digit twin is
    plain = nc.run_python([twin if x == line else x for x in lines], Config(), as_of, 2, 1000)
    assert (py.snapshot["accepted"], py.snapshot["duplicates"]) == (
        plain.snapshot["accepted"],
        plain.snapshot["duplicates"],
    )
    assert py.snapshot["duplicates"] >= 1


@pytest.mark.parametrize("digits", [10, 12, 18])
def test_over_precise_timestamps(digits: int) -> None:
    # more digits than nanoseconds: exact Fractions in Python (the core may hold them itself)
    base, last_ms = sim(15, 6000, 3, 150)
    lines, line, _ = with_precise_line(base, len(base) // 3, digits)
    lines += [line, with_precise_line(base, len(base) - 1, digits)[1]]
    compare(lines, Config(), parse_as_of(iso_ms(last_ms)), 3, 700)


def test_over_precise_as_of() -> None:
    lines, last_ms = sim(9, 3000, 2, 100)
    as_of = parse_as_of(iso_ms(last_ms)[:-1] + "0000000001Z")
    compare(lines, Config(), as_of, 1, 500)


def test_handed_over_starts_false() -> None:
    from streams import native

    n = native.NativeReplayer(Config(), parse_as_of(HOT_AS_OF))
    assert n.handed_over is False and n.lines == 0
    n.line(dumps_line(env("product-events", P, RTS)))
    assert n.handed_over is False and n.lines == 1


def scalar_state(r: Replayer) -> dict[str, Any]:
    """What a Replayer carries besides the entity state: counters, clocks, offsets."""
    p = r.pipeline
    clocks = [
        (x.watermark, x.fold, x._last_sweep) for x in [*p.users, *p.accounts]
    ]  # fmt: skip
    counts = [(u.accepted, u.duplicates, dict(u.rejected)) for u in p.users]
    return {
        "lines": r.lines,
        "offsets": dict(r.offsets),
        "redelivered": p.redelivered,
        "skipped": p.skipped,
        "clocks": clocks,
        "counts": counts,
        "users": [sorted(u.users) for u in p.users],
        "accounts": [sorted(a.accounts) for a in p.accounts]
        if hasattr(p.accounts[0], "accounts")
        else None,
    }


def continue_in_python(
    lines: list[bytes],
    cut: int,
    config: Config,
    as_of: Any,
    partitions: int,
    sweep_every: int,
    precise_first: bool = False,
) -> None:
    from streams import native

    ref = nc.run_python(lines, config, as_of, partitions, sweep_every)
    calls: list[tuple[Any, ...]] = []
    n = native.NativeReplayer(
        config, as_of, partitions, on_reject=lambda *a: calls.append(a), sweep_every=sweep_every
    )
    n.feed(lines[:cut])
    r = n.to_replayer()
    assert isinstance(r, Replayer)
    # the state handed over is the Python engine's own at that point
    half = nc.run_python(lines[:cut], config, as_of, partitions, sweep_every)
    assert scalar_state(r) == scalar_state(half.engine), f"cut at line {cut}"
    assert nc.exact_differences(half.snapshot, r.snapshot()) == [], f"cut at line {cut}"
    assert nc.exact_differences(half.rejects, calls) == [], f"cut at line {cut}"
    r.feed(lines[cut:])
    got = nc.Outcome(r.snapshot(), calls, r.lines)
    diffs = nc.outcome_differences(ref, got)
    assert not diffs, f"cut at line {cut} of {len(lines)}:\n" + "\n".join(diffs[:30])


def state_lines() -> list[bytes]:
    """Entity state of every kind made early, then used late: duplicates of earlier ids, a
    session's end, a ticket's resolution, a return, milestones after a signup, a repeated
    answer, a redelivered offset, a late event folded in."""
    t0 = ms("2026-11-19T08:00:00Z")

    def pe(
        eid: str, typ: str, user: str, at: int, rts: int, off: int | None = None, **f: Any
    ) -> bytes:
        v = {"event_id": eid, "type": typ, "user_id": user, "ts": iso_ms(at), **f}
        extra = {} if off is None else {"partition": 0, "offset": off}
        return dumps_line(env("product-events", json.dumps(v), rts, key=user, **extra))

    def sa(rid: str, user: str, at: int, rts: int, score: int, **f: Any) -> bytes:
        v = {
            "response_id": rid,
            "survey": "nps",
            "score": score,
            "user_id": user,
            "ts": iso_ms(at),
            **f,
        }
        return dumps_line(env("survey-answers", json.dumps(v), rts, key=user))

    H = 3_600_000
    first = [
        pe("m1", "key_action", "u1", t0, t0, 0),  # a milestone before the signup is known
        pe("s1", "signup", "u1", t0 + 10 * H, t0 + 10 * H, 1, account_id="acme"),
        pe("p1", "profile_completed", "u1", t0 + 11 * H, t0 + 11 * H, 2),
        pe("ss", "session_start", "u2", t0 + 12 * H, t0 + 12 * H, 3, session_id="sx"),
        pe("pv1", "page_view", "u2", t0 + 12 * H + 1, t0 + 12 * H + 5, 4, session_id="sx"),
        pe(
            "t1",
            "ticket_opened",
            "u3",
            t0 + 13 * H,
            t0 + 13 * H,
            5,
            props={"ticket_id": "T", "category": "bug"},
        ),
        pe(
            "o1",
            "purchase",
            "u3",
            t0 + 14 * H,
            t0 + 14 * H,
            6,
            props={"order_id": "O", "amount": 30.5},
        ),
        pe("sub", "subscription_started", "u4", t0 + 15 * H, t0 + 15 * H, 7, account_id="globex"),
        sa("r1", "u4", t0 + 15 * H, t0 + 15 * H, 2, touchpoint="support"),
        pe("f1", "feature_used", "u5", t0 + 30 * H, t0 + 30 * H, 8, props={"feature": "search"}),
        pe("ob", "onboarding_step", "u1", t0 + 31 * H, t0 + 31 * H, 9, props={"step": "welcome"}),
    ]
    second = [
        pe("m1", "key_action", "u1", t0, t0 + 32 * H, 10),  # duplicate (ids kept 49 h)
        pe("pv2", "page_view", "u2", t0 + 12 * H + 2, t0 + 32 * H, 11, session_id="sx"),
        pe("se", "session_end", "u2", t0 + 12 * H + 3, t0 + 32 * H, 12, session_id="sx"),
        pe("t2", "ticket_resolved", "u3", t0 + 33 * H, t0 + 33 * H, 13, props={"ticket_id": "T"}),
        pe("ret", "return", "u3", t0 + 34 * H, t0 + 34 * H, 14, props={"order_id": "O"}),
        pe("x", "page_view", "u9", t0, t0 + 34 * H, 3, session_id="s"),  # redelivered offset
        sa("r1", "u4", t0 + 15 * H, t0 + 35 * H, 2),  # duplicate answer
        pe(
            "can", "subscription_cancelled", "u4", t0 + 35 * H, t0 + 35 * H, 15, account_id="globex"
        ),
        pe("late", "key_action", "u5", t0 + 20 * H, t0 + 36 * H, 16),  # late but within 48 h
        pe("k2", "key_action", "u1", t0 + 36 * H, t0 + 36 * H, 17),
        pe("f1", "feature_used", "u5", t0 + 30 * H, t0 + 37 * H, 18, props={"feature": "search"}),
        pe("ob2", "onboarding_step", "u1", t0 + 37 * H, t0 + 37 * H, 19, props={"step": "tour"}),
        pe(
            "ss", "session_start", "u2", t0 + 60 * H, t0 + 60 * H, 20, session_id="sy"
        ),  # after expiry
    ]
    return first + second


@pytest.mark.parametrize("sweep_every", [0, 3])
def test_to_replayer_hands_over_every_kind_of_state(sweep_every: int) -> None:
    lines = state_lines()
    as_of = parse_as_of("2026-11-21T12:00:00Z")
    full = nc.run_python(lines, Config(), as_of, 1, sweep_every).snapshot
    assert full["duplicates"] >= 3 and full["accepted"] >= 15
    for partitions in (1, 3):
        for cut in range(len(lines) + 1):
            continue_in_python(lines, cut, Config(), as_of, partitions, sweep_every)


@pytest.mark.parametrize(("seed", "partitions", "sweep_every"), [(10, 1, 1000), (11, 4, 0)])
def test_to_replayer_mid_stream(seed: int, partitions: int, sweep_every: int) -> None:
    lines, last_ms = sim(seed, 12_000, 8, 200)
    config = Config.from_mapping(CUSTOM_CONFIG)
    as_of = parse_as_of(iso_ms(last_ms))
    for cut in (0, 1, len(lines) // 3, len(lines) // 2 + 7, len(lines) - 1, len(lines)):
        continue_in_python(lines, cut, config, as_of, partitions, sweep_every)


def test_to_replayer_after_a_hand_over() -> None:
    base, last_ms = sim(12, 6000, 4, 150)
    lines, _, _ = with_precise_line(base, 1000)
    as_of = parse_as_of(iso_ms(last_ms))
    from streams import native

    n = native.NativeReplayer(Config(), as_of, 2, sweep_every=500)
    n.feed(lines[:3000])
    assert n.handed_over is True
    continue_in_python(lines, 3000, Config(), as_of, 2, 500)


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_to_replayer_on_scenarios(seed: int) -> None:
    sc = generate(seed, stories=400)
    config = Config.from_mapping(dict(sc.config))
    as_of = parse_as_of(sc.as_of)
    n = len(sc.lines)
    for cut in (n // 4, n // 2, 3 * n // 4):
        continue_in_python(sc.lines, cut, config, as_of, 1 + seed % 3, 50)


def test_make_replayer_and_replay_lines() -> None:
    from streams import native
    from streams.replay import replay_lines

    lines, last_ms = sim(13, 4000, 3, 100)
    as_of = iso_ms(last_ms)
    assert native.replay_lines(lines, Config(), as_of, 3) == replay_lines(lines, Config(), as_of, 3)
    assert (
        nc.exact_differences(
            replay_lines(lines, Config(), as_of, 3), native.replay_lines(lines, Config(), as_of, 3)
        )
        == []
    )
    t = parse_as_of(as_of)
    assert isinstance(native.make_replayer(Config(), t, engine="python"), Replayer)
    nat = native.make_replayer(Config(), t, 2, engine="native")
    assert isinstance(nat, native.NativeReplayer)
    auto = native.make_replayer(Config(), t, 2, engine="auto")
    assert isinstance(auto, native.NativeReplayer)  # the module is available here
    nat.feed(lines)
    auto.feed(lines)
    ref = nc.run_python(lines, Config(), t, 2)
    assert nc.exact_differences(ref.snapshot, nat.snapshot()) == []
    assert nc.exact_differences(ref.snapshot, auto.snapshot()) == []


# ---------------------------------------------------------------------------------------------
# `engagement replay --engine`
# ---------------------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "engagement_cli", "replay", *args], capture_output=True, timeout=120
    )


@pytest.mark.parametrize("partitions", ["1", "3"])
def test_cli_engines_agree(tmp_path: Path, partitions: str) -> None:
    lines, last_ms = sim(14, 8000, 3, 200)
    data = tmp_path / "in.jsonl"
    # the simulated file with every envelope case in it (non-UTF-8 lines too), no final newline
    body = b"".join(lines[:4000] + envelope_lines() + lines[4000:])
    data.write_bytes(body[:-1])
    cfg = tmp_path / "c.toml"
    cfg.write_text('timezone = "America/New_York"\nactivation_events = ["file_uploaded"]\n')
    outs = {}
    for engine in ("python", "native", "auto"):
        rej = tmp_path / f"rejects-{engine}.jsonl"
        r = cli(
            "--engine", engine, "--config", str(cfg), "--as-of", iso_ms(last_ms), "--partitions",
            partitions, "--progress", "none", "--rejects", str(rej), str(data),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        outs[engine] = (r.stdout, rej.read_bytes())
    assert outs["native"][0] == outs["python"][0]
    assert outs["native"][1] == outs["python"][1]
    assert outs["auto"] == outs["python"]
    snap = json.loads(outs["python"][0])
    rows = outs["python"][1].splitlines()
    assert len(rows) == sum(snap["rejected"].values()) > 100
    assert snap["accepted"] > 6000
