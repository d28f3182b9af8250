"""The compiled core's reader of a fetch's bytes (native/src/kafka.rs `read_record_batches`)
against aiokafka's own reader, the reference (agents/raw_fetch.py `_unpack_raw` on aiokafka's
`MemoryRecords`, as without the core).

Fetch bytes are assembled from record batches built by aiokafka's `DefaultRecordBatchBuilder`
(magic 2) at random: keys and values null, empty or long (varints of one to three bytes),
headers, timestamps before 1970, transactional batches, control batches, batches with the
log-append time; the fetch starting inside a batch and ending with a partial one. Both readers
must give the same records and the same fetch position after them. The core gives up (None)
on what it does not read, and aiokafka's reader then runs: a compressed batch, an older
magic, a CRC that does not match, lengths that do not add up.

The broker's own fetches are compared in tests/integration/test_raw_fetch.py.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from aiokafka.consumer import fetcher as _fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

from agents import raw_fetch
from tests.unit.test_native_live import _native

ATTRIBUTES, CRC = 21, 17


def _reader() -> Any:
    _native()
    from engagement_native import read_record_batches

    return read_record_batches


def _batch(rng: random.Random, base: int, n: int, attributes: int = 0, tx: bool = False) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, int(tx), 7 if tx else -1, 0 if tx else -1, -1, 1 << 22)
    for i in range(n):
        key = rng.choice([None, b"", b"k%d" % i, rng.randbytes(200)])
        value = rng.choice([None, b"", b'{"i": %d}' % i, rng.randbytes(rng.choice([70, 9000]))])
        headers = rng.choice([[], [("h", b"v")], [("a", None), ("bb", b"")]])
        ts = rng.choice([1_700_000_000_000 + i, -5, 0, None])
        b.append(i, ts, key, value, headers)
    data = bytearray(b.build())
    struct.pack_into(">q", data, 0, base)
    if attributes:
        old = struct.unpack_from(">h", data, ATTRIBUTES)[0]
        struct.pack_into(">h", data, ATTRIBUTES, old | attributes)
        struct.pack_into(">I", data, CRC, calc_crc32c(bytes(data[ATTRIBUTES:])))
    return bytes(data)


def _aiokafka(data: bytes, start: int) -> tuple[list[Any], int]:
    """What `_unpack_raw` yields on aiokafka's reader, and the position after."""
    recs = _fetcher.PartitionRecords(
        TopicPartition("t", 0), MemoryRecords(data), None, start, raw_fetch.RAW, None, True,
        _fetcher.READ_UNCOMMITTED,
    )  # fmt: skip
    out = list(raw_fetch._unpack_raw(recs))
    return out, recs.next_fetch_offset


def _fetch(rng: random.Random) -> tuple[bytes, int]:
    parts, base = [], rng.randrange(0, 10**12)
    first = base
    for _ in range(rng.randint(1, 6)):
        n = rng.randint(1, 12)
        kind = rng.choice(["plain", "plain", "tx", "control", "append_time"])
        if kind == "control":
            parts.append(_batch(rng, base, 1, attributes=0x20, tx=True))
        elif kind == "append_time":
            parts.append(_batch(rng, base, n, attributes=0x08))
        else:
            parts.append(_batch(rng, base, n, tx=kind == "tx"))
        base += n + rng.choice([0, 0, 3])  # compaction leaves gaps
    data = b"".join(parts)
    if rng.random() < 0.4:  # a fetch ends with part of a batch
        data += _batch(rng, base, 3)[: rng.randint(1, 60)]
    # a fetch may start inside its first batch, or (as aiokafka allows) past its end
    start = first + rng.choice([0, 0, 1, 2, 40])
    return data, start


@pytest.mark.parametrize("seed", range(40))
def test_the_core_reads_a_fetch_as_aiokafka_does(seed: int) -> None:
    read = _reader()
    rng = random.Random(seed)
    data, start = _fetch(rng)
    want, after = _aiokafka(data, start)
    got = read(data, start, True)
    assert got is not None
    run, position = got
    assert position == after
    assert (run.records() if run is not None else []) == want
    if run is not None:
        assert len(run) == len(want) and run.last_offset == want[-1][0]


def test_what_the_core_does_not_read_goes_to_aiokafka() -> None:
    read = _reader()
    rng = random.Random(1)
    good = _batch(rng, 100, 5)
    # a compressed batch (gzip), as aiokafka builds it
    b = DefaultRecordBatchBuilder(2, 1, 0, -1, -1, -1, 1 << 20)
    b.append(0, 1, b"k", b"v" * 100, [])
    gz = bytearray(b.build())
    struct.pack_into(">q", gz, 0, 105)
    assert read(good + bytes(gz), 100, True) is None
    # an older magic
    old = bytearray(good)
    old[16] = 1
    assert read(bytes(old), 100, True) is None
    # a CRC that does not match: aiokafka raises when it checks, reads when it does not
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    assert read(bytes(bad), 100, True) is None
    with pytest.raises(CorruptRecordException):
        _aiokafka(bytes(bad), 100)
    got = read(bytes(bad), 100, False)
    assert got is not None and len(got[0]) == 5
    # a record count larger than the records there
    short = bytearray(good)
    struct.pack_into(">i", short, 57, 6)
    struct.pack_into(">I", short, CRC, calc_crc32c(bytes(short[ATTRIBUTES:])))
    assert read(bytes(short), 100, True) is None
    # nothing but a partial batch: no records, the position unchanged
    assert read(good[:30], 100, True) == (None, 100)


def test_the_intakes_encoder_reads_runs_as_tuples() -> None:
    """`encode_batches` on the core's runs gives the bytes of the same records as tuples."""
    nl = _native()
    from streams import codec

    read = _reader()
    rng = random.Random(3)
    data, start = _fetch(rng)
    while read(data, start, True)[0] is None:
        data, start = _fetch(rng)
    run = read(data, start, True)[0]
    want = codec.encode_batches("product-events", 2, run.records())
    assert nl.encode_batches("product-events", 2, [run]) == want
    assert codec.encode_batches("product-events", 2, [run]) == want
    assert raw_fetch.count([run]) == len(run.records())
    assert raw_fetch.next_offset([run]) == run.records()[-1][0] + 1
    assert raw_fetch.tuples([run]) == run.records()


def test_the_batches_the_core_writes_are_those_aiokafka_writes_and_reads() -> None:
    """`write_record_batches` (the epochs' changelog writes, agents/epoch.py `send_as_batches`)
    writes what aiokafka's builder writes for the same records, byte for byte but for the
    fields the producer leaves to the broker, and aiokafka's reader reads them back with a
    valid CRC-32C; the batches stay under the size asked unless one record alone is larger."""
    _native()
    from engagement_native import write_record_batches

    rng = random.Random(11)
    for round_ in range(40):
        n = rng.randint(1, 300)
        records = [
            (
                rng.choice([b"", b"\x01u-%d" % i, rng.randbytes(rng.randint(1, 300))]),
                rng.choice([None, b"", b"v%d" % i, rng.randbytes(rng.choice([5, 130, 2000]))]),
            )
            for i in range(n)
        ]
        if round_ % 7 == 0:
            records.insert(rng.randrange(n), (b"big", rng.randbytes(70_000)))
        max_bytes = rng.choice([200, 4096, 65_536, 1 << 20])
        ts = 1_700_000_000_000 + round_
        batches = write_record_batches(records, ts, max_bytes)
        assert sum(count for _, count in batches) == len(records)
        at = 0
        for data, count in batches:
            assert count >= 1 and (len(data) < max_bytes or count == 1)
            # aiokafka's builder for the same records (it takes one while the batch fits)
            b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, max_bytes)
            for i, (key, value) in enumerate(records[at : at + count]):
                assert b.append(i, ts, key, value, []) is not None
            if at + count < len(records):  # the next one did not fit
                assert b.append(count, ts, *records[at + count], []) is None
            theirs = bytes(b.build())
            # the partition leader epoch (-1 here, 0 there) is the broker's to set
            assert data[:12] + data[16:21] == theirs[:12] + theirs[16:21]
            assert data[21:] == theirs[21:]
            assert struct.unpack_from(">I", data, CRC)[0] == calc_crc32c(data[ATTRIBUTES:])
            # and read back as a fetch would read it, at its offset
            base = 1000 + at
            got, _next = _aiokafka(struct.pack(">q", base) + data[8:], base)
            assert [(r[0], r[2], r[3]) for r in got] == [
                (base + i, k, v) for i, (k, v) in enumerate(records[at : at + count])
            ]
            at += count
