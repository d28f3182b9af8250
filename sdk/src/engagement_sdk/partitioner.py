"""Kafka's default partitioner (murmur2 of the key), so a user lives in the partition a
standard producer puts its records in. Pure: used by the SDK's producer and by the worker's live
rules, loader and simulator alike (streams/partitioner.py re-exports it)."""

from __future__ import annotations

_MASK = 0xFFFFFFFF
_M = 0x5BD1E995


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2`: the 32-bit murmur2 hash of `data`, as a signed Java int."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end4 = length & ~3
    for i in range(0, end4, 4):
        k = (data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24) * _M & _MASK
        k ^= k >> 24
        h = (h * _M & _MASK) ^ (k * _M & _MASK)
    rem = length & 3
    if rem == 3:
        h ^= data[end4 + 2] << 16
    if rem >= 2:
        h ^= data[end4 + 1] << 8
    if rem >= 1:
        h ^= data[end4]
        h = h * _M & _MASK
    h ^= h >> 13
    h = h * _M & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def kafka_partition(key: bytes, n: int) -> int:
    """The partition Kafka's default producer partitioner picks for a non-null `key` among `n`:
    `toPositive(murmur2(key)) % n` (`BuiltInPartitioner.partitionForKey`)."""
    if n < 1:
        raise ValueError(f"the number of partitions must be >= 1, not {n}")
    return (murmur2(key) & 0x7FFFFFFF) % n
