"""One root exception type for the project, and the codec's "reject this record" error."""

from __future__ import annotations


class EngagementError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(EngagementError):
    """The configuration (TOML file, environment, flags) is missing or invalid."""


class AsOfError(EngagementError, ValueError):
    """An as-of instant that is not RFC 3339 (or integer epoch milliseconds)."""


class Reject(EngagementError):  # a verb on purpose: "reject this record"
    """A record fails validation; `reason` is one of REJECT_REASONS."""

    __slots__ = ("detail", "reason")

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason
