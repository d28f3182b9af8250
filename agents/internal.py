"""The worker's internal names: internal topics, consumer groups, changelogs, Redis keys.
Every other module takes these names from here (the micro-batch encoding is
streams/codec.py's)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from agents.settings import Settings
from streams.topics import CHURN_SIGNALS, DEAD_LETTERS, TopicSpec

INTERNAL_MAX_MESSAGE = 16 * 1024 * 1024
INTERNAL_CONFIGS = {
    "max.message.bytes": str(INTERNAL_MAX_MESSAGE),
    "retention.ms": str(7 * 86400_000),
}


@dataclass(frozen=True)
class Names:
    """Every name a deployment (topic prefix + app id) uses in Kafka and Redis."""

    prefix: str
    app_id: str

    @classmethod
    def of(cls, s: Settings) -> Names:
        return cls(s.topics.prefix, s.app_id)

    def topic(self, base: str) -> str:
        return f"{self.prefix}{base}"

    # Kafka: the worker's own topics and groups
    @property
    def app_group(self) -> str:
        """Faust's consumer group (and the prefix of its changelogs)."""
        return self.topic(self.app_id)

    @property
    def intake_group(self) -> str:
        return self.topic(f"{self.app_id}-intake")

    @property
    def batches(self) -> str:
        """Micro-batches, forwards, forget requests and gap nudges: the users stage's input."""
        return self.topic(f"{self.app_id}-batches")

    @property
    def account_facts(self) -> str:
        return self.topic(f"{self.app_id}-account-facts")

    def changelog(self, table: str) -> str:
        return f"{self.app_group}-{table}-changelog"

    @property
    def dead_letters(self) -> str:
        return self.topic(DEAD_LETTERS)

    @property
    def churn_signals(self) -> str:
        return self.topic(CHURN_SIGNALS)

    # Redis
    def registry_key(self, worker_id: str) -> str:
        """A worker's URL, refreshed every second (`*` as worker_id: the pattern of all)."""
        return f"{self.prefix}{self.app_id}:worker:{worker_id}"

    def health_keys(self) -> tuple[str, str]:
        """(sorted set, parts hash) of the customers' health scores."""
        base = f"{self.prefix}{self.app_id}:health"
        return base, base + ":parts"

    def receipt_key(self, request_id: str) -> str:
        """The receipt of a forget request, which `engagement forget` waits for."""
        return f"{self.prefix}{self.app_id}:forget:{request_id}"


TABLES = ("users", "accounts")


def internal_topic_specs(s: Settings) -> tuple[TopicSpec, ...]:
    """The worker's internal topics (micro-batches, account facts) and its tables' changelogs
    (Faust's names), P partitions each: created before Faust starts, so two workers starting
    together never race to create them (Faust then sees no partitions and crashes an agent)."""
    rf = s.topics.replication_factor
    cfg = MappingProxyType(dict(INTERNAL_CONFIGS))
    compact = MappingProxyType({"cleanup.policy": "compact"})
    n = Names.of(s)
    return (
        TopicSpec("batches", n.batches, s.partitions, rf, cfg),
        TopicSpec("account-facts", n.account_facts, s.partitions, rf, cfg),
        *(TopicSpec(f"{t}-changelog", n.changelog(t), s.partitions, rf, compact) for t in TABLES),
    )
