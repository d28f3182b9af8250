"""engagement_sdk: send events and survey answers to an engagement-metrics deployment.

Typed builders make records the engine accepts (or raise `Reject` with the reason and message
the worker would give: the same validation code runs in both), `Producer` / `SyncProducer` send
them keyed by user id to the partition Kafka's default partitioner picks, idempotently.

    import engagement_sdk as sdk

    with sdk.SyncProducer("127.0.0.1:9092") as producer:
        producer.send(sdk.signup("u-42", account_id="acme"))
        producer.send(sdk.nps("u-42", 9, touchpoint="support"))

Dependencies: msgspec and aiokafka only (sdk/README.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engagement_sdk.builders import (
    BUILDERS,
    DEFAULT_LATENESS_HOURS,
    PRODUCT_EVENTS,
    SURVEY_ANSWERS,
    SURVEY_BUILDERS,
    Record,
    ces,
    click,
    csat,
    encode,
    event,
    feature_used,
    impression,
    key_action,
    make_record,
    nps,
    onboarding_step,
    order_return,
    page_view,
    profile_completed,
    purchase,
    session_end,
    session_start,
    signup,
    social_interaction,
    subscription_cancelled,
    subscription_started,
    survey_answer,
    ticket_opened,
    ticket_resolved,
    validate,
)
from engagement_sdk.errors import EngagementError, ProducerError, Reject
from engagement_sdk.partitioner import kafka_partition, murmur2
from engagement_sdk.records import REJECT_REASONS

if TYPE_CHECKING:
    from engagement_sdk.producer import Producer, SyncProducer

__version__ = "0.1.0"

__all__ = [
    "BUILDERS",
    "DEFAULT_LATENESS_HOURS",
    "PRODUCT_EVENTS",
    "REJECT_REASONS",
    "SURVEY_ANSWERS",
    "SURVEY_BUILDERS",
    "EngagementError",
    "Producer",
    "ProducerError",
    "Record",
    "Reject",
    "SyncProducer",
    "ces",
    "click",
    "csat",
    "encode",
    "event",
    "feature_used",
    "impression",
    "kafka_partition",
    "key_action",
    "make_record",
    "murmur2",
    "nps",
    "onboarding_step",
    "order_return",
    "page_view",
    "profile_completed",
    "purchase",
    "session_end",
    "session_start",
    "signup",
    "social_interaction",
    "subscription_cancelled",
    "subscription_started",
    "survey_answer",
    "ticket_opened",
    "ticket_resolved",
    "validate",
]


def __getattr__(name: str) -> Any:
    """The producer client, imported on first use: validation alone (what the worker imports)
    loads neither asyncio nor threads, and aiokafka only when a producer starts."""
    if name in ("Producer", "SyncProducer"):
        from engagement_sdk import producer

        return getattr(producer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
