"""How long the broker may hold a fetch of Faust's consumer: 100 ms, not Faust's 1.5 s.

Faust creates its consumer with `fetch_max_wait_ms=1500` (faust/transport/drivers/aiokafka.py,
`_create_worker_consumer`). aiokafka has one fetch in flight per broker, and leaves out of it
the partitions whose fetched records the application has not taken yet. So when the users
stage is still working through the micro-batches of some partitions, the next fetch asks only
for partitions with nothing new (the account facts', say); the broker holds it until 1.5 s pass
or one of those gets data, and meanwhile the partitions just drained cannot be fetched. Once a
hiccup puts the stage behind, this repeats every round and the delay never shrinks (measured:
a step from 0.4 s to ~3 s that stayed, bench/RESULTS.md 2026-12-06). A shorter hold costs an
idle worker ten empty fetches a second.
"""

from __future__ import annotations

from typing import Any

FETCH_MAX_WAIT_MS = 100


def install(max_wait_ms: int = FETCH_MAX_WAIT_MS, cls: Any = None) -> bool:
    """Make the consumers Faust's driver creates (`cls`, default Faust's
    `AIOKafkaConsumerThread`) hold fetches at most `max_wait_ms`, once; False when the driver is
    not laid out as this module knows (Faust's 1.5 s then stays)."""
    if cls is None:
        try:
            from faust.transport.drivers import aiokafka as driver
        except ImportError:
            return False
        cls = getattr(driver, "AIOKafkaConsumerThread", None)
    original: Any = getattr(cls, "_create_worker_consumer", None)
    if original is None:
        return False
    if getattr(original, "_holds_fetch_ms", None) is not None:
        return True

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        if hasattr(consumer, "_fetch_max_wait_ms"):  # read when the consumer starts
            consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    _create_worker_consumer._holds_fetch_ms = max_wait_ms  # type: ignore[attr-defined]
    cls._create_worker_consumer = _create_worker_consumer
    return True
