"""Records as plain tuples for the intake's consumer: `(offset, timestamp, key, value)`.

aiokafka makes a `ConsumerRecord` of eleven fields for every record it fetches (sizes, headers
tuple, checksum, deserializers); the intake reads four of them and re-packs them at once. In
the worker's drain profile building it was the largest single item (13% of the samples of a
600,000-record drain at 17:17, 2026-12-05). A consumer created with `key_deserializer=RAW`
gets the four-tuple instead, built in one loop over aiokafka's record batches; every other
consumer of the process (Faust's) is untouched.

With the compiled core, a fetch's records are not even tuples: the core reads the bytes the
broker sent (native/src/kafka.rs, record batch format v2) into one `RecordRun` per partition's
fetch, whose records the core's `encode_batches` writes into micro-batch messages from those
bytes. `install()` wraps aiokafka's `MemoryRecords` to keep the bytes (`_KeptBytes`). What the
core does not read (a compressed batch, an older magic, a CRC that does not match) goes through
aiokafka's reader as tuples, as without the core.

This reads aiokafka's fetcher internals (`PartitionRecords`), checked once when installed:
with a release that lays them out differently `install()` returns False and the intake takes
the `ConsumerRecord` path, with the same results. Transactions (read_committed) also take that
path. tests/integration/test_raw_fetch.py holds the tuples to aiokafka's own records.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiokafka.consumer import fetcher as _fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.structs import ConsumerRecord

try:
    from engagement_native import RecordRun, read_record_batches
except ImportError:  # no compiled core: tuples only
    RecordRun = None
    read_record_batches = None

Raw = tuple[int, int, "bytes | None", "bytes | None"]


def RAW(key: bytes | None) -> bytes | None:  # a marker, named like a constant
    """The key "deserializer" that marks a consumer whose records come as `Raw` tuples."""
    return key


_installed: bool | None = None
_ATTRS = ("_records", "_check_crcs", "_isolation_level", "_key_deserializer", "next_fetch_offset")


class _KeptBytes:
    """aiokafka's `MemoryRecords`, keeping the bytes it reads (`raw`) for the core's reader."""

    __slots__ = ("_inner", "raw")

    def __init__(self, data: Any) -> None:
        self.raw = data
        self._inner = _MemoryRecords(data)

    def size_in_bytes(self) -> int:
        return int(self._inner.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._inner.has_next())

    def next_batch(self) -> Any:
        return self._inner.next_batch()


_MemoryRecords: Any = getattr(_fetcher, "MemoryRecords", None)


def _unpack_raw(self: Any) -> Iterator[Any]:
    """`PartitionRecords._unpack_records` for read_uncommitted, yielding the fetch's records as
    one `RecordRun` (the core read the bytes), else as `Raw` tuples."""
    records = self._records
    check = self._check_crcs
    data = getattr(records, "raw", None)
    if read_record_batches is not None and type(data) is bytes:
        got = read_record_batches(data, self.next_fetch_offset, bool(check))
        if got is not None:
            run, self.next_fetch_offset = got
            if run is not None:
                yield run
            return
    while records.has_next():
        batch = records.next_batch()
        if check and not batch.validate_crc():
            raise CorruptRecordException(f"Invalid CRC - {self._tp}")
        if batch.is_control_batch:  # skipped whatever the isolation level
            self.next_fetch_offset = batch.next_offset
            continue
        for r in batch:
            offset = r.offset
            if offset < self.next_fetch_offset:  # a compressed message set's earlier records
                continue
            self.next_fetch_offset = offset + 1
            yield (offset, r.timestamp, r.key, r.value)
        self.next_fetch_offset = batch.next_offset


def install() -> bool:
    """Teach aiokafka's fetcher the `RAW` marker (once per process); False when its internals
    are not the ones this module knows."""
    global _installed
    if _installed is not None:
        return _installed
    cls: Any = getattr(_fetcher, "PartitionRecords", None)
    original: Any = getattr(cls, "_unpack_records", None)
    probe = None
    if cls is not None and original is not None:
        try:
            probe = cls(None, None, None, 0, RAW, None, False, _fetcher.READ_UNCOMMITTED)
        except Exception:
            probe = None
    if probe is None or not all(hasattr(probe, a) for a in _ATTRS):
        _installed = False
        return False

    def _unpack_records(self: Any) -> Iterator[Any]:
        if self._key_deserializer is RAW and self._isolation_level != _fetcher.READ_COMMITTED:
            return _unpack_raw(self)
        return original(self)

    cls._unpack_records = _unpack_records
    if _MemoryRecords is not None and read_record_batches is not None:
        _fetcher.MemoryRecords = _KeptBytes
    _installed = True
    return True


def tuples(records: list[Any]) -> list[Raw]:
    """A partition's fetched records as `Raw` tuples, whichever path fetched them."""
    if records and RecordRun is not None and type(records[0]) is RecordRun:
        return [r for run in records for r in run.records()]
    return [as_raw(m) for m in records]


def count(records: list[Any]) -> int:
    """How many records a partition's fetch holds (tuples, `ConsumerRecord`s or runs)."""
    if records and RecordRun is not None and type(records[0]) is RecordRun:
        return sum(len(run) for run in records)
    return len(records)


def next_offset(records: list[Any]) -> int:
    """The offset after the last record of a non-empty fetch: the intake's commit."""
    last = records[-1]
    if RecordRun is not None and type(last) is RecordRun:
        return int(last.last_offset) + 1
    return int(as_raw(last)[0]) + 1


def as_raw(m: Raw | ConsumerRecord[Any, Any]) -> Raw:
    """A record as a `Raw` tuple, whichever path fetched it."""
    if type(m) is tuple:
        return m
    return (m.offset, m.timestamp, m.key, m.value)  # type: ignore[union-attr]
