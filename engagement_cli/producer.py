"""The project's producer: the SDK's client (sdk/, engagement_sdk.producer: keys and partitions,
idempotence, batching, retries, flush on exit) with the security settings of the
KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_* environment variables (agents/security.py)
and errors that name the command line's flags.

    from engagement_cli.producer import SyncProducer
    from streams import sdk

    with SyncProducer("127.0.0.1:9092") as producer:
        producer.send(sdk.signup("u-42", account_id="acme"))
        meta = producer.send(sdk.nps("u-42", 9)).result()   # wait for this one
        print(meta.topic, meta.partition, meta.offset)

`engagement emit` and `engagement load` use this client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from engagement_sdk import producer as _sdk
from engagement_sdk.producer import (
    DEFAULT_BOOTSTRAP,
    DELIVERY_TIMEOUT_MS,
    LINGER_MS,
    MAX_BATCH_BYTES,
    MAX_REQUEST_BYTES,
    RETRY_BACKOFF_MS,
    ProducerError,
)

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DELIVERY_TIMEOUT_MS",
    "LINGER_MS",
    "MAX_BATCH_BYTES",
    "MAX_REQUEST_BYTES",
    "RETRY_BACKOFF_MS",
    "Producer",
    "ProducerError",
    "SyncProducer",
    "producer_settings",
]


def producer_settings(
    bootstrap: str,
    *,
    client_id: str = "engagement-producer",
    linger_ms: int = LINGER_MS,
    delivery_timeout_ms: int = DELIVERY_TIMEOUT_MS,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The AIOKafkaProducer keyword arguments of every producer of the project."""
    from agents.security import kafka_kwargs

    return _sdk.producer_settings(
        bootstrap,
        client_id=client_id,
        linger_ms=linger_ms,
        delivery_timeout_ms=delivery_timeout_ms,
        kafka_options=kafka_kwargs(env),
    )


class Producer(_sdk.Producer):
    """The SDK's asyncio producer, secured by the KAFKA_* environment (or `env`)."""

    unreachable_hint: ClassVar[str] = (
        "is it running (`make stack-up`)? Set --bootstrap or KAFKA_BOOTSTRAP."
    )
    missing_topic_hint: ClassVar[str] = (
        "create it with `engagement topics` (with the same prefix), or check --prefix / "
        "ENGAGEMENT_TOPIC_PREFIX"
    )

    def __init__(
        self,
        bootstrap: str = DEFAULT_BOOTSTRAP,
        *,
        env: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> None:
        from agents.security import kafka_kwargs

        # ConfigError (bad security settings) is raised here, before any connection
        super().__init__(bootstrap, kafka_options=kafka_kwargs(env), **kw)


class SyncProducer(_sdk.SyncProducer):
    """The SDK's blocking producer for scripts, secured like `Producer`."""

    producer_class: ClassVar[type[_sdk.Producer]] = Producer
