"""Fuzz: 1,000,000 hostile, bad and borderline records through the engine (tests/hostile.py).

Most go through `Pipeline.record` as the live worker hands them over (bytes values, any key);
one in ten, and every tombstone, through the replay reader as kcat envelopes, with redelivered
lines and records of other topics mixed in. Nothing may crash, and accepted + duplicates +
rejected must equal the records in, reason by reason, as the generator built them; every
rejected record reaches the dead-letter sink, once. Two processes (CI has two cores) of
500,000 records each; FUZZ_RECORDS and FUZZ_SEED change the size and the seed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from streams.config import Config
from streams.replay import Replayer
from streams.timeutil import parse_as_of
from tests.hostile import ACCEPTED, DUPLICATE, OUTCOMES, Hostile, iso

RECORDS = int(os.environ.get("FUZZ_RECORDS", "1000000"))
SEED = int(os.environ.get("FUZZ_SEED", "20261123"))
PROCESSES = 2
ENVELOPE_MAX = 70_000  # larger values go through Pipeline.record only (the size check is first)


def fuzz_chunk(seed: int, n: int) -> dict[str, Any]:
    """Feed n generated records to one pipeline; what the generator expects and what the
    engine counted."""
    gen = Hostile(seed=seed)
    as_of = iso(gen.rts + (n + 1) * gen.step_ms + 60_000)
    dead: Counter[str] = Counter()

    def sink(reason: str, *_: object) -> None:
        dead[reason] += 1

    replay = Replayer(Config(), parse_as_of(as_of), partitions=4, on_reject=sink, sweep_every=0)
    pipe = replay.pipeline
    rnd = random.Random(seed)
    offsets = {"product-events": 0, "survey-answers": 0}
    redelivered = skipped = 0
    last_line: bytes | None = None
    for i, rec in enumerate(gen.records(n), 1):
        v = rec.value
        if v is not None and (len(v) > ENVELOPE_MAX or rnd.random() < 0.9):
            pipe.record(rec.topic, rec.key, v, rec.rts)
        else:
            offsets[rec.topic] += 1
            payload = None if v is None else v.decode("utf-8", "surrogateescape")
            line = json.dumps({
                "topic": rec.topic, "partition": 0, "offset": offsets[rec.topic], "ts": rec.rts,
                "key": rec.key, "payload": payload,
            }).encode()  # fmt: skip
            replay.line(line)
            if last_line is not None and rnd.random() < 0.05:
                replay.line(last_line)  # Kafka delivered it again: it changes nothing
                redelivered += 1
            last_line = line
            if rnd.random() < 0.02:  # another topic: skipped, not counted
                replay.line(json.dumps({"topic": "other", "ts": rec.rts, "payload": "{"}).encode())
                skipped += 1
        if i % 100_000 == 0:
            pipe.maybe_sweep()
    pipe.sweep()
    snap = replay.snapshot()  # every metric computes over what survived
    return {
        "expected": dict(gen.expected),
        "cases": dict(gen.cases),
        "got": {ACCEPTED: snap["accepted"], DUPLICATE: snap["duplicates"], **snap["rejected"]},
        "dead": dict(dead),
        "redelivered": (pipe.redelivered, redelivered),
        "skipped": (pipe.skipped, skipped),
    }


def test_a_million_hostile_records_are_all_accounted_for() -> None:
    sizes = [RECORDS // PROCESSES] * PROCESSES
    sizes[0] += RECORDS - sum(sizes)
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(PROCESSES, mp_context=ctx) as pool:
        results = list(pool.map(fuzz_chunk, [SEED + k for k in range(PROCESSES)], sizes))
    expected: Counter[str] = Counter()
    cases: Counter[str] = Counter()
    for res in results:
        want = {k: res["expected"].get(k, 0) for k in OUTCOMES}
        got = {k: res["got"].get(k, 0) for k in OUTCOMES}
        assert got == want, {k: (got[k], want[k]) for k in OUTCOMES if got[k] != want[k]}
        rejected = {k: v for k, v in want.items() if k not in (ACCEPTED, DUPLICATE) and v}
        assert res["dead"] == rejected  # every rejected record reaches the dead letters, once
        assert res["redelivered"][0] == res["redelivered"][1] > 0
        assert res["skipped"][0] == res["skipped"][1] > 0
        expected.update(res["expected"])
        cases.update(res["cases"])
    assert sum(expected.values()) == RECORDS
    # the generator covered every outcome and every case, many times each
    assert set(expected) == set(OUTCOMES)
    assert len(cases) >= 75, sorted(cases)
    assert min(cases.values()) >= (100 if RECORDS >= 1_000_000 else 1), cases
