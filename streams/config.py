"""The engine's configuration: the TOML keys of the metric catalogue (docs/metrics.md §5)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.errors import ConfigError

TYPE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}", re.ASCII)

# [metrics] keys, and the label values their series reserve: "other" for the values outside
# the allow-list, "none" for survey answers without a touchpoint.
METRICS_KEYS = {"touchpoints": ("other", "none"), "features": ("other",)}


@dataclass(frozen=True)
class Config:
    timezone: str = "UTC"
    allowed_lateness_hours: float = 48
    inactive_events: tuple[str, ...] = ("impression",)
    activation_events: tuple[str, ...] = ("profile_completed", "key_action")
    value_event: str = "key_action"
    funnel_steps: tuple[str, ...] = ("welcome", "profile", "invite", "tour", "done")
    # Not a catalogue key: how far behind the newest record timestamp the live state folds
    # event-time detail (docs/architecture.md, "State and its retention"); capped by the as-of in
    # replay and by the worker's clock live.
    fold_margin_seconds: float = field(default=300.0)
    # [metrics]: allow-lists of the label values of the Prometheus series (agents/metrics.py);
    # a touchpoint or feature outside its list is exported as "other".
    metric_touchpoints: tuple[str, ...] = ("support", "checkout", "onboarding", "email", "in_app")
    metric_features: tuple[str, ...] = ()

    KEYS = (
        "timezone",
        "allowed_lateness_hours",
        "inactive_events",
        "activation_events",
        "value_event",
        "funnel_steps",
        "metrics",
        # [worker]: the worker's settings below flags and environment (agents/settings.py
        # reads and checks them; the metric configuration ignores them)
        "worker",
    )

    @property
    def lateness_ns(self) -> int:
        return int(self.allowed_lateness_hours * 3600) * 10**9

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "configuration") -> Config:
        unknown = sorted(set(data) - set(cls.KEYS))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(cls.KEYS)}"
            )
        kw: dict[str, Any] = {}
        if "timezone" in data:
            tz = data["timezone"]
            if not isinstance(tz, str):
                raise ConfigError(f"{source}: timezone must be a string such as 'Europe/Paris'")
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ConfigError(
                    f"{source}: timezone {tz!r} is not an IANA time zone name (e.g. 'UTC', 'America/New_York')"
                ) from exc
            kw["timezone"] = tz
        if "allowed_lateness_hours" in data:
            v = data["allowed_lateness_hours"]
            if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0 or v > 24 * 3650:
                raise ConfigError(
                    f"{source}: allowed_lateness_hours must be a number of hours >= 0 (got {v!r})"
                )
            kw["allowed_lateness_hours"] = v
        for key in ("inactive_events", "activation_events"):
            if key in data:
                kw[key] = _type_list(data[key], key, source, allow_empty=True)
        if "funnel_steps" in data:
            steps = data["funnel_steps"]
            if (
                not isinstance(steps, list)
                or not steps
                or not all(isinstance(s, str) and 1 <= len(s) <= 128 for s in steps)
            ):
                raise ConfigError(
                    f"{source}: funnel_steps must be a non-empty list of step names (strings of 1-128 characters)"
                )
            if len(set(steps)) != len(steps):
                raise ConfigError(f"{source}: funnel_steps has a repeated step")
            kw["funnel_steps"] = tuple(steps)
        if "value_event" in data:
            v = data["value_event"]
            if not isinstance(v, str) or not TYPE_RE.fullmatch(v):
                raise ConfigError(
                    f"{source}: value_event must be an event type matching [a-z][a-z0-9_]{{0,63}}"
                )
            kw["value_event"] = v
        if "metrics" in data:
            kw.update(_metrics_table(data["metrics"], source))
        if "worker" in data and not isinstance(data["worker"], Mapping):
            raise ConfigError(f"{source}: worker must be a table ([worker])")
        return cls(**kw)

    @classmethod
    def from_toml_text(cls, text: str, source: str = "configuration") -> Config:
        return cls.from_mapping(parse_toml(text, source), source)

    @classmethod
    def from_toml_file(cls, path: str) -> Config:
        return cls.from_mapping(read_toml(path), path)

    def to_mapping(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "allowed_lateness_hours": self.allowed_lateness_hours,
            "inactive_events": list(self.inactive_events),
            "activation_events": list(self.activation_events),
            "value_event": self.value_event,
            "funnel_steps": list(self.funnel_steps),
            "metrics": {
                "touchpoints": list(self.metric_touchpoints),
                "features": list(self.metric_features),
            },
        }


def parse_toml(text: str, source: str = "configuration") -> dict[str, Any]:
    """The tables of a TOML text; ConfigError in the one wording every command uses."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {source} is not valid TOML: {exc}") from None


def read_toml(path: str) -> dict[str, Any]:
    """The tables of the TOML file `path` (ENGAGEMENT_CONFIG, --config): the one place that
    reads it and words its errors, for `replay`, `emit` and `worker` alike."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    return parse_toml(text, path)


def _metrics_table(v: Any, source: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(v, Mapping):
        raise ConfigError(
            f"{source}: metrics must be a table ([metrics] with touchpoints, features)"
        )
    unknown = sorted(set(v) - set(METRICS_KEYS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) metrics.{', metrics.'.join(unknown)}; "
            f"valid keys: {', '.join('metrics.' + k for k in METRICS_KEYS)}"
        )
    kw: dict[str, tuple[str, ...]] = {}
    for key, reserved_labels in METRICS_KEYS.items():
        if key not in v:
            continue
        names = v[key]
        if not isinstance(names, list) or not all(
            isinstance(n, str) and 1 <= len(n) <= 128 for n in names
        ):
            raise ConfigError(
                f"{source}: metrics.{key} must be a list of names (strings of 1-128 characters)"
            )
        reserved = sorted(set(names) & set(reserved_labels))
        if reserved:
            raise ConfigError(
                f"{source}: metrics.{key} may not list {', '.join(map(repr, reserved))}: "
                f"its series reserve {' and '.join(map(repr, reserved_labels))}"
            )
        kw["metric_" + key] = tuple(dict.fromkeys(names))
    return kw


def _type_list(v: Any, key: str, source: str, allow_empty: bool) -> tuple[str, ...]:
    if (
        not isinstance(v, list)
        or (not v and not allow_empty)
        or not all(isinstance(s, str) and TYPE_RE.fullmatch(s) for s in v)
    ):
        raise ConfigError(
            f"{source}: {key} must be a list of event types matching [a-z][a-z0-9_]{{0,63}}"
        )
    return tuple(dict.fromkeys(v))
