"""One root exception type for the project, and the codec's "reject this record" error.

`EngagementError` and `Reject` are defined by the producer SDK (sdk/, `engagement_sdk.errors`),
whose validation the engine runs: a record the SDK refuses is refused by the worker with the same
exception, reason and message."""

from __future__ import annotations

from engagement_sdk.errors import EngagementError, Reject

__all__ = ["AsOfError", "ConfigError", "EngagementError", "Reject"]


class ConfigError(EngagementError):
    """The configuration (TOML file, environment, flags) is missing or invalid."""


class AsOfError(EngagementError, ValueError):
    """An as-of instant that is not RFC 3339 (or integer epoch milliseconds)."""
