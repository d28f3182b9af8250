"""The producer SDK, Kafka part: send records to the input topics the way the engine expects.

- **Keys and partitions**: a record is keyed by its user id and sent to the partition Kafka's
  default partitioner (murmur2) picks for that key, computed here explicitly
  (engagement_sdk.partitioner), so every record of a user lands in the partition that owns the
  user.
- **Idempotent**: `acks=all` and `enable_idempotence=True`: a batch the client retries after a
  lost acknowledgement is written once.
- **Batching**: records wait up to `linger_ms` (20 ms) to share a batch (up to 1 MiB).
- **Retries**: a batch Kafka cannot take (leader moving, broker restarting) is retried every
  `retry_backoff_ms` until it is `delivery_timeout_ms` old (2 minutes: enough to ride out a
  broker restart); starting is retried until `connect_timeout_s`. A record never acknowledged
  is counted in `failed` and its error kept in `error`: nothing fails silently.
- **Flush on exit**: `async with Producer(...)` flushes and stops; `SyncProducer` (for plain
  scripts) runs the client on a background event loop, flushes on `close()`, on leaving its
  `with` block and, if neither happened, at interpreter exit (atexit).
- **Security and other client settings**: `kafka_options`, keyword arguments of aiokafka's
  AIOKafkaProducer (`security_protocol`, `sasl_mechanism`, `sasl_plain_username`,
  `sasl_plain_password`, `ssl_context`, ...). The settings the guarantees above rest on are not
  among them: `acks`, `enable_idempotence` and the timeouts are the client's own.

    import engagement_sdk as sdk

    with sdk.SyncProducer("127.0.0.1:9092") as producer:
        producer.send(sdk.signup("u-42", account_id="acme"))
        meta = producer.send(sdk.nps("u-42", 9)).result()   # wait for this one
        print(meta.topic, meta.partition, meta.offset)

`engagement emit` and `engagement load` of the engagement-metrics project use this client too
(engagement_cli/producer.py adds the KAFKA_* environment variables of its security settings).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any, ClassVar

from engagement_sdk.builders import Record
from engagement_sdk.errors import ProducerError
from engagement_sdk.partitioner import kafka_partition

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
# How long a record may wait for Kafka (retried every RETRY_BACKOFF_MS) before it is given up:
# long enough to ride out a broker restart (docs/operations.md, "Faults we test").
DELIVERY_TIMEOUT_MS = 120_000
RETRY_BACKOFF_MS = 200
LINGER_MS = 20
MAX_BATCH_BYTES = 1024 * 1024
MAX_REQUEST_BYTES = 2 * 1024 * 1024

# Settings the client's guarantees rest on: set by its own parameters, never by kafka_options.
RESERVED_OPTIONS = frozenset(
    (
        "bootstrap_servers",
        "client_id",
        "acks",
        "enable_idempotence",
        "linger_ms",
        "request_timeout_ms",
        "retry_backoff_ms",
        "max_batch_size",
        "max_request_size",
    )
)


def producer_settings(
    bootstrap: str,
    *,
    client_id: str = "engagement-producer",
    linger_ms: int = LINGER_MS,
    delivery_timeout_ms: int = DELIVERY_TIMEOUT_MS,
    kafka_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The AIOKafkaProducer keyword arguments of the producer; `kafka_options` adds security
    settings (or other aiokafka settings) but may not change those in RESERVED_OPTIONS."""
    options = dict(kafka_options or {})
    reserved = sorted(RESERVED_OPTIONS.intersection(options))
    if reserved:
        raise ValueError(
            f"kafka_options may not set {', '.join(reserved)}: the producer sets them itself "
            "(acks=all and idempotence; linger_ms and delivery_timeout_ms are its parameters)"
        )
    return {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        **options,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": linger_ms,
        "max_batch_size": MAX_BATCH_BYTES,
        "max_request_size": MAX_REQUEST_BYTES,
        # aiokafka retries a batch until it is request_timeout_ms old (its delivery timeout)
        "request_timeout_ms": delivery_timeout_ms,
        "retry_backoff_ms": RETRY_BACKOFF_MS,
    }


class Producer:
    """An asyncio producer of the input topics (see the module's docstring)."""

    # The advice of the errors of `start` and `partition_for` (subclasses name their own flags).
    unreachable_hint: ClassVar[str] = "is it running, and is the address right?"
    missing_topic_hint: ClassVar[str] = (
        "create it (`engagement topics`, with the same prefix), or check the prefix"
    )

    def __init__(
        self,
        bootstrap: str = DEFAULT_BOOTSTRAP,
        *,
        prefix: str = "",
        client_id: str = "engagement-producer",
        linger_ms: int = LINGER_MS,
        delivery_timeout_ms: int = DELIVERY_TIMEOUT_MS,
        connect_timeout_s: float = 10.0,
        metadata_timeout_s: float = 15.0,
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.metadata_timeout_s = metadata_timeout_s
        self.prefix = prefix
        self.connect_timeout_s = connect_timeout_s
        # bad settings are refused here, before any connection
        self._kwargs = producer_settings(
            bootstrap,
            client_id=client_id,
            linger_ms=linger_ms,
            delivery_timeout_ms=delivery_timeout_ms,
            kafka_options=kafka_options,
        )
        self._producer: Any = None
        self._partitions: dict[str, int] = {}
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self.error: BaseException | None = None

    async def start(self) -> Producer:
        """Connect, retrying until `connect_timeout_s`; raises ProducerError."""
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        deadline = time.monotonic() + self.connect_timeout_s
        delay = 0.2
        # aiokafka logs every failed connection attempt; our error says it once
        kafka_log = logging.getLogger("aiokafka")
        level = kafka_log.level
        if not logging.getLogger().handlers:
            kafka_log.setLevel(logging.CRITICAL)
        try:
            while True:
                producer = AIOKafkaProducer(**self._kwargs)
                try:
                    await producer.start()
                except KafkaError as exc:
                    await producer.stop()
                    if time.monotonic() + delay > deadline:
                        raise ProducerError(
                            f"cannot reach Kafka at {self.bootstrap} ({exc}); "
                            + self.unreachable_hint
                        ) from None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                self._producer = producer
                return self
        finally:
            kafka_log.setLevel(level)

    def topic(self, base: str) -> str:
        return self.prefix + base

    async def partition_for(self, topic: str, key: bytes) -> int:
        """The partition of `key` in `topic` (full name), as Kafka's default partitioner picks it."""
        n = self._partitions.get(topic)
        if n is None:
            from aiokafka.errors import KafkaError

            # aiokafka waits for a missing topic until its request timeout (2 minutes here),
            # logging every retry: ask for a shorter while, quietly
            log = logging.getLogger("aiokafka")
            level = log.level
            if not logging.getLogger().handlers:
                log.setLevel(logging.CRITICAL)
            try:
                parts = await asyncio.wait_for(
                    self._producer.partitions_for(topic), self.metadata_timeout_s
                )
            except (TimeoutError, KafkaError):
                parts = None
            finally:
                log.setLevel(level)
            if not parts:
                raise ProducerError(
                    f"topic {topic} does not exist on {self.bootstrap}; " + self.missing_topic_hint
                )
            n = self._partitions[topic] = len(parts)
        return kafka_partition(key, n)

    def _done(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            self.failed += 1
            self.error = self.error or asyncio.CancelledError()
            return
        exc = fut.exception()
        if exc is None:
            self.acked += 1
        else:
            self.failed += 1
            self.error = self.error or exc

    async def send_raw(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        timestamp_ms: int | None,
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        """Queue one record to `topic` (full name); returns the future of its RecordMetadata.
        With a key and no partition, the key's partition; raises ProducerError when Kafka's
        buffer stayed full past the delivery timeout."""
        from aiokafka.errors import KafkaError

        if self._producer is None:
            raise ProducerError("the producer is not started (use `async with Producer(...)`)")
        if partition is None and key is not None:
            n = self._partitions.get(topic)  # known: no coroutine on the hot path
            if n is not None:
                partition = kafka_partition(key, n)
            else:
                partition = await self.partition_for(topic, key)
        try:
            fut: asyncio.Future[Any] = await self._producer.send(
                topic, value=value, key=key, timestamp_ms=timestamp_ms, partition=partition
            )
        except KafkaError as exc:
            self.error = self.error or exc
            raise ProducerError(
                f"Kafka at {self.bootstrap} did not take the record: {exc!r}"
            ) from exc
        self.sent += 1
        fut.add_done_callback(self._done)
        return fut

    async def send(self, record: Record) -> asyncio.Future[Any]:
        """Queue a record built by engagement_sdk.builders (validated, keyed by user id)."""
        return await self.send_raw(
            self.topic(record.topic), record.value, record.key, record.timestamp_ms
        )

    async def send_and_wait(self, record: Record) -> Any:
        """Send and wait for the acknowledgement; returns the RecordMetadata (topic, partition,
        offset, timestamp); raises ProducerError when it was not acknowledged."""
        fut = await self.send(record)
        try:
            return await fut
        except Exception as exc:
            raise ProducerError(f"Kafka at {self.bootstrap} did not acknowledge: {exc!r}") from exc

    async def flush(self) -> None:
        if self._producer is not None:
            await self._producer.flush()

    async def stop(self) -> None:
        """Flush what is pending, then disconnect (idempotent)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.flush()
            finally:
                await producer.stop()
            await asyncio.sleep(0)  # let the done-callbacks of the last sends run

    def check(self) -> None:
        """Raise ProducerError if any record sent so far was not acknowledged."""
        if self.error is not None or self.failed:
            raise ProducerError(
                f"delivery to Kafka at {self.bootstrap} failed: {self.acked:,} of {self.sent:,} "
                f"records acknowledged ({self.error!r})"
            )

    async def __aenter__(self) -> Producer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _closer(ref: weakref.ref[SyncProducer]) -> Any:
    def close() -> None:
        producer = ref()
        if producer is not None:
            producer._close_quietly()

    return close


class SyncProducer:
    """A blocking facade of `Producer` for scripts: its own event loop in a daemon thread.

    `send()` returns a `concurrent.futures.Future` of the RecordMetadata. `close()` (also on
    leaving a `with` block, and at interpreter exit if it was never called) flushes every
    pending record and raises ProducerError if any was not acknowledged. Keyword arguments are
    those of `Producer` (of `producer_class`)."""

    producer_class: ClassVar[type[Producer]] = Producer

    def __init__(self, bootstrap: str = DEFAULT_BOOTSTRAP, **kw: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="engagement-producer", daemon=True
        )
        self._thread.start()
        self._closed = False
        try:
            self._producer = self.producer_class(bootstrap, **kw)
            self._call(self._producer.start())
        except BaseException:
            self._shutdown_loop()
            raise
        # at exit: flush and close, unless close() ran (a weak reference: no leak)
        self._atexit = _closer(weakref.ref(self))
        atexit.register(self._atexit)

    def _call(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def sent(self) -> int:
        return self._producer.sent

    @property
    def acked(self) -> int:
        return self._producer.acked

    def send(self, record: Record) -> concurrent.futures.Future[Any]:
        """Queue a record; the future resolves to its RecordMetadata once acknowledged."""
        if self._closed:
            raise ProducerError("the producer is closed")
        out: concurrent.futures.Future[Any] = concurrent.futures.Future()

        async def go() -> None:
            try:
                fut = await self._producer.send(record)
            except BaseException as exc:
                out.set_exception(exc)
                return

            def relay(f: asyncio.Future[Any]) -> None:
                if f.cancelled():
                    out.cancel()
                elif f.exception() is not None:
                    out.set_exception(f.exception())
                else:
                    out.set_result(f.result())

            fut.add_done_callback(relay)

        self._call(go())
        return out

    def flush(self) -> None:
        self._call(self._producer.flush())

    def close(self) -> None:
        """Flush, disconnect and stop the loop; raise ProducerError if a record was lost."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        try:
            self._call(self._producer.stop())
        finally:
            self._shutdown_loop()
        self._producer.check()

    def _close_quietly(self) -> None:
        try:
            self.close()
        except ProducerError as exc:
            logging.getLogger(__name__).error("%s", exc)

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> SyncProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
