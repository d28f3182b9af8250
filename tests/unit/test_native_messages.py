"""The messages the compiled core writes and reads itself (native/src/messages.rs) against
streams/codec.py, their reference:

- `encode_batches` (the intake's micro-batch messages) gives `codec.encode_batches`' bytes for
  random records (keys and values absent, empty, at msgpack's bin 8 / 16 / 32 boundaries; ints
  of every width) and at every cut of `chunks` (small limits, a record larger than the limit);
  anything that is not an (int, int, bytes or None, bytes or None) tuple makes it answer None,
  and streams/native_live.py `encode_batches` then gives Python's bytes;
- a user partition's `apply_encoded` reads a message of an older release (no version byte) as
  `decode_batch` does, and applies nothing from a message it does not read (a forget request,
  a gap nudge, garbage, an unknown version), answering None for the caller's Python path;
- an account partition's `apply_encoded` answers None, with nothing applied, for a forget
  message and for facts it must not read (an int where the value's float belongs).

The side-by-side runs of whole streams through `apply_encoded` are in test_native_live.py
(`test_messages_applied_from_their_bytes_side_by_side`).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from streams import codec
from streams.config import Config
from streams.live import Batch
from tests.unit.test_native_live import PE, START_MS, _native

# a record value the fast path decides (a valid product event)
VALUE = (
    b'{"event_id":"e-1","type":"session_start","user_id":"u-1","account_id":"a-1",'
    b'"ts":"2026-11-01T00:00:01Z","session_id":"s-1"}'
)


def _blob(rng: random.Random) -> bytes | None:
    n = rng.choice([None, 0, 1, 31, 255, 256, 1000, 65535, 65536, 70000])
    return None if n is None else rng.randbytes(n)


def _records(rng: random.Random, n: int) -> list[Any]:
    ints = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1]
    ints += [-1, -32, -33, -129, -(2**31), -(2**63)]
    return [
        (rng.choice([*ints, rng.randrange(2**40)]), rng.choice(ints), _blob(rng), _blob(rng))
        for _ in range(n)
    ]


@pytest.mark.parametrize("seed", range(6))
def test_encode_batches_gives_the_codecs_bytes(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    nl = _native()
    rng = random.Random(seed)
    recs = _records(rng, rng.randint(0, 60))
    topic = rng.choice([PE, "survey-answers", "t" * 40, "é" * 200])
    # the intake's limits, then small ones: cuts by count, by bytes, a record over the limit
    for max_records, max_bytes in [
        (codec.MAX_BATCH_RECORDS, codec.MAX_BATCH_BYTES),
        (1, 10**9),
        (7, 10**9),
        (1000, 300),
        (5, 70_000),
    ]:
        monkeypatch.setattr(codec, "MAX_BATCH_RECORDS", max_records)
        monkeypatch.setattr(codec, "MAX_BATCH_BYTES", max_bytes)
        want = codec.encode_batches(topic, seed, recs)
        got = nl._native.encode_batches(topic, seed, recs, max_records, max_bytes)
        assert got == want, (max_records, max_bytes)
        assert [codec.decode_batch(b).records for b in got] == [
            codec.decode_batch(b).records for b in want
        ]
        if recs and max_records == 7:
            assert len(got) == -(-len(recs) // 7)


@pytest.mark.parametrize(
    "records",
    [
        [(1, 2, None, "a str")],
        [(1, 2, b"k")],
        [[1, 2, None, b"v"]],
        [(2**64, 2, None, b"v")],
        [(1, 2.5, None, b"v")],
        [(1, 2, bytearray(b"k"), b"v")],
    ],
)
def test_records_the_core_does_not_write_go_to_python(records: list[Any]) -> None:
    nl = _native()
    assert nl._native.encode_batches(PE, 0, records, 2000, 10**6) is None
    try:
        want = codec.encode_batches(PE, 0, records)
    except Exception as exc:  # Python refuses it too: the same error either way
        with pytest.raises(type(exc)):
            nl.encode_batches(PE, 0, records)
    else:
        assert nl.encode_batches(PE, 0, records) == want


def _user_partition() -> Any:
    return _native().NativeLiveUserPartition(Config.from_mapping({}), 0, 1, 1)


def test_a_batch_of_an_older_release_is_read() -> None:
    part, ref = _user_partition(), _user_partition()
    batch = Batch(PE, 0, [(0, START_MS + 1000, b"u-1", VALUE)])
    legacy = codec.encode_batch(batch)[1:]  # no version byte: it begins with the array, 0x93
    assert legacy[:1] == b"\x93"
    got = part.apply_encoded(legacy, 0)
    assert got is not None and got.records == 1 and list(got.kept_ts) == [START_MS + 1000]
    out = ref.apply(batch, 0)
    assert (got.out.applied, got.out.dirty) == (out.applied, out.dirty) == (1, {"u-1"})


@pytest.mark.parametrize(
    "data",
    [
        codec.encode_batch(Batch("__forget__", 0, [])),
        codec.encode_batch(Batch(PE, 0, [])),  # a gap nudge
        codec.encode_batch(Batch("other-topic", 0, [(0, START_MS, None, VALUE)])),
        b"\x09" + codec.encode_batch(Batch(PE, 0, [(0, START_MS, None, VALUE)]))[1:],
        codec.encode_batch(Batch(PE, 0, [(0, START_MS, None, VALUE)])) + b"\x00",
        codec.encode_batch(Batch(PE, 0, [(0, START_MS, None, VALUE)]))[:-3],
        b"",
    ],
)
def test_a_message_the_core_does_not_read_applies_nothing(data: bytes) -> None:
    part = _user_partition()
    assert part.apply_encoded(data, 0) is None
    assert len(part.users) == 0 and part.meta.accepted == 0


def test_an_account_partition_reads_only_facts_it_holds_exactly() -> None:
    nl = _native()
    cfg = Config.from_mapping({})
    part = nl.NativeLiveAccountPartition(cfg, 0)
    fact = ("a-1", START_MS * 10**6, START_MS * 10**6, True, 0, 0.0, PE, 0, 5, 0)
    assert part.apply_encoded(codec.encode_forget("a-1", "r-1"), 0) is None
    assert part.apply_encoded(codec.encode_facts([(*fact[:5], 0, *fact[6:])]), 0) is None
    assert len(part.accounts) == 0
    assert part.apply_encoded(codec.encode_facts([fact]), 0) == {"a-1"}
    ref = nl.NativeLiveAccountPartition(cfg, 0)
    assert ref.apply([fact], 0) == {"a-1"}
    assert codec.encode_account(part.accounts["a-1"]) == codec.encode_account(ref.accounts["a-1"])


def test_a_micro_batch_is_cut_where_chunks_cuts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """At the limits exactly: 2 records of 150 counted bytes fill 300, the third starts anew;
    3 records at a limit of 3 records, the fourth starts anew."""
    nl = _native()
    recs = [(i, i, None, bytes(118)) for i in range(4)]  # 118 + 32 = 150 bytes each
    for max_records, max_bytes, cuts in [(1000, 300, [2, 2]), (3, 10**6, [3, 1])]:
        monkeypatch.setattr(codec, "MAX_BATCH_RECORDS", max_records)
        monkeypatch.setattr(codec, "MAX_BATCH_BYTES", max_bytes)
        want = codec.encode_batches(PE, 0, recs)
        assert [len(codec.decode_batch(b).records) for b in want] == cuts
        assert nl._native.encode_batches(PE, 0, recs, max_records, max_bytes) == want
