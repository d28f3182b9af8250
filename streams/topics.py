"""The project's Kafka topics: names, partition counts and configs (pure: no I/O).

Input topics (`product-events`, `survey-answers`) are keyed by `user_id` and must have the
same partition count: per-user state is co-partitioned with both. Output topics
(`dead-letters`, `churn-signals`) are read by downstream consumers, which dedupe on
(topic, partition, offset).

Records carry event time as their Kafka timestamp (`CreateTime`) and may be historical
(backfills, replays) or slightly in the future (client clocks), so every topic keeps its
records forever (`retention.ms=-1`: nothing is deleted because its timestamp looks old) and
accepts any timestamp (Kafka 4 otherwise refuses records more than one hour in the future).

Names may carry a prefix (setting `ENGAGEMENT_TOPIC_PREFIX`), so tests and parallel
environments can run on their own topics of the same broker. The settings are read from a
mapping passed in (the runtime passes `os.environ`); nothing here reads the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

PRODUCT_EVENTS = "product-events"
SURVEY_ANSWERS = "survey-answers"
DEAD_LETTERS = "dead-letters"
CHURN_SIGNALS = "churn-signals"

INPUT_TOPICS: tuple[str, ...] = (PRODUCT_EVENTS, SURVEY_ANSWERS)
OUTPUT_TOPICS: tuple[str, ...] = (DEAD_LETTERS, CHURN_SIGNALS)
ALL_TOPICS: tuple[str, ...] = INPUT_TOPICS + OUTPUT_TOPICS

# Environment variables (see docs/stack.md).
ENV_PREFIX = "ENGAGEMENT_TOPIC_PREFIX"
ENV_INPUT_PARTITIONS = "ENGAGEMENT_INPUT_PARTITIONS"
ENV_OUTPUT_PARTITIONS = "ENGAGEMENT_OUTPUT_PARTITIONS"
ENV_REPLICATION_FACTOR = "ENGAGEMENT_REPLICATION_FACTOR"

DEFAULT_INPUT_PARTITIONS = 8
DEFAULT_OUTPUT_PARTITIONS = 4
DEFAULT_REPLICATION_FACTOR = 1

# Largest value Kafka accepts for a `long` config: "no limit".
_NO_LIMIT = str(2**63 - 1)

# Configs shared by every topic of the project.
BASE_CONFIGS: Mapping[str, str] = MappingProxyType(
    {
        "cleanup.policy": "delete",
        # Keep records whatever their timestamp: historical event times must not expire them.
        "retention.ms": "-1",
        "retention.bytes": "-1",
        "message.timestamp.type": "CreateTime",
        # Accept historical and future event times (Kafka 4 defaults after.max.ms to 1 hour).
        "message.timestamp.before.max.ms": _NO_LIMIT,
        "message.timestamp.after.max.ms": _NO_LIMIT,
    }
)


class TopicSettingsError(ValueError):
    """A topic setting (prefix, partition count, replication factor) is invalid."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as the project declares it."""

    base_name: str
    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class TopicSettings:
    """What may vary between environments: the prefix, partition counts, replication."""

    prefix: str = ""
    input_partitions: int = DEFAULT_INPUT_PARTITIONS
    output_partitions: int = DEFAULT_OUTPUT_PARTITIONS
    replication_factor: int = DEFAULT_REPLICATION_FACTOR

    def __post_init__(self) -> None:
        for label, value in (
            ("input partitions", self.input_partitions),
            ("output partitions", self.output_partitions),
            ("replication factor", self.replication_factor),
        ):
            if value < 1:
                raise TopicSettingsError(f"{label} must be >= 1, got {value}")
        validate_prefix(self.prefix)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TopicSettings:
        """Settings from environment-like variables; unset or empty means the default."""
        return cls(
            prefix=env.get(ENV_PREFIX, ""),
            input_partitions=_int_setting(env, ENV_INPUT_PARTITIONS, DEFAULT_INPUT_PARTITIONS),
            output_partitions=_int_setting(env, ENV_OUTPUT_PARTITIONS, DEFAULT_OUTPUT_PARTITIONS),
            replication_factor=_int_setting(
                env, ENV_REPLICATION_FACTOR, DEFAULT_REPLICATION_FACTOR
            ),
        )


# Kafka topic names: at most 249 characters of [a-zA-Z0-9._-].
_LEGAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_MAX_NAME = 249


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if every topic name built from it is legal; raise otherwise."""
    bad = sorted(set(prefix) - _LEGAL)
    if bad:
        raise TopicSettingsError(f"topic prefix {prefix!r} has illegal characters {bad!r}")
    longest = max(len(name) for name in ALL_TOPICS)
    if len(prefix) + longest > _MAX_NAME:
        raise TopicSettingsError(f"topic prefix {prefix!r} is too long")
    return prefix


def topic_name(base_name: str, prefix: str = "") -> str:
    """The full name of a project topic: `prefix + base_name`."""
    return f"{validate_prefix(prefix)}{base_name}"


def topic_specs(settings: TopicSettings | None = None) -> tuple[TopicSpec, ...]:
    """Every project topic, inputs first, with its full name, partitions and configs."""
    s = settings or TopicSettings()
    configs = MappingProxyType(dict(BASE_CONFIGS))
    specs = [
        TopicSpec(
            name, topic_name(name, s.prefix), s.input_partitions, s.replication_factor, configs
        )
        for name in INPUT_TOPICS
    ]
    specs += [
        TopicSpec(
            name, topic_name(name, s.prefix), s.output_partitions, s.replication_factor, configs
        )
        for name in OUTPUT_TOPICS
    ]
    return tuple(specs)


def _int_setting(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise TopicSettingsError(f"{key} must be an integer, got {raw!r}") from None
