"""Kafka's default partitioner (murmur2 of the key): the producer SDK's
(sdk/src/engagement_sdk/partitioner.py), re-exported for the live rules, the loader and the
simulator."""

from __future__ import annotations

from engagement_sdk.partitioner import (
    kafka_partition,
    murmur2,
)

__all__ = [
    "kafka_partition",
    "murmur2",
]
