"""Records as plain tuples for the intake's consumer: `(offset, timestamp, key, value)`.

aiokafka makes a `ConsumerRecord` of eleven fields for every record it fetches (sizes, headers
tuple, checksum, deserializers); the intake reads four of them and re-packs them at once. In
the worker's drain profile building it was the largest single item (13% of the samples of a
600,000-record drain at 17:17, 2026-12-05). A consumer created with `key_deserializer=RAW`
gets the four-tuple instead, built in one loop over aiokafka's record batches; every other
consumer of the process (Faust's) is untouched.

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

Raw = tuple[int, int, "bytes | None", "bytes | None"]


def RAW(key: bytes | None) -> bytes | None:  # a marker, named like a constant
    """The key "deserializer" that marks a consumer whose records come as `Raw` tuples."""
    return key


_installed: bool | None = None
_ATTRS = ("_records", "_check_crcs", "_isolation_level", "_key_deserializer", "next_fetch_offset")


def _unpack_raw(self: Any) -> Iterator[Raw]:
    """`PartitionRecords._unpack_records` for read_uncommitted, yielding `Raw` tuples."""
    records = self._records
    check = self._check_crcs
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
    _installed = True
    return True


def as_raw(m: Raw | ConsumerRecord[Any, Any]) -> Raw:
    """A record as a `Raw` tuple, whichever path fetched it."""
    if type(m) is tuple:
        return m
    return (m.offset, m.timestamp, m.key, m.value)  # type: ignore[union-attr]
