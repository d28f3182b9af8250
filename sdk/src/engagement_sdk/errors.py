"""The root exception type of the SDK and of the engagement-metrics project (whose worker raises
the same `Reject`), and the codec's "reject this record" error."""

from __future__ import annotations


class EngagementError(Exception):
    """Root of every error the SDK and the engagement-metrics project raise on purpose."""


class Reject(EngagementError):  # a verb on purpose: "reject this record"
    """A record fails validation; `reason` is one of REJECT_REASONS (engagement_sdk.records)."""

    __slots__ = ("detail", "reason")

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


class ProducerError(EngagementError):
    """Kafka could not be reached, or a record was not acknowledged."""
