"""Event-time helpers: exact RFC 3339 instants, UTC formatting and calendar days in a zone.

An instant is an integer number of nanoseconds since the Unix epoch. A timestamp written with
more than nine fractional digits is kept exactly as a `Fraction` of nanoseconds; Python compares
and subtracts the two kinds exactly, so the rest of the engine never needs to care.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

# The instants and the RFC 3339 parser that validation needs are the producer SDK's (sdk/,
# engagement_sdk.timeutil): one definition of a valid `ts` for producers and workers.
from engagement_sdk.timeutil import (
    _DAYS_YEAR_1,
    _DAYS_YEAR_10000,
    _FRAC_SCALE,
    _HOUR_CACHE,
    _MMSS,
    DAY,
    END_INSTANT,
    END_MS,
    HOUR,
    MIN_INSTANT,
    MIN_MS,
    MS,
    NS,
    Instant,
    days_from_civil,
    parse_rfc3339,
)
from streams.errors import AsOfError

__all__ = [
    "DAY",
    "END_INSTANT",
    "END_MS",
    "HOUR",
    "MIN_INSTANT",
    "MIN_MS",
    "MS",
    "NS",
    "_FRAC_SCALE",
    "_HOUR_CACHE",
    "_MMSS",
    "DayCalc",
    "Instant",
    "days_from_civil",
    "format_instant",
    "parse_as_of",
    "parse_rfc3339",
]


def parse_as_of(value: str) -> Instant:
    """An as-of instant from RFC 3339 or integer epoch milliseconds; raises AsOfError."""
    v = value.strip()
    if re.fullmatch(r"-?[0-9]+", v, re.ASCII):
        inst: Instant = int(v) * MS
        if MIN_INSTANT <= inst < END_INSTANT:
            return inst
    else:
        parsed = parse_rfc3339(v)
        if parsed is not None:
            return parsed
    raise AsOfError(
        f"as-of {value!r} is not an RFC 3339 instant in years 0001-9999 "
        "(e.g. 2026-11-20T10:00:00Z or 2026-11-20T11:00:00+01:00) nor epoch milliseconds"
    )


def format_instant(inst: Instant) -> str:
    """RFC 3339 in UTC with `Z`; fractional seconds only when non-zero, without trailing zeros."""
    whole = int(inst // NS)
    rest = inst - whole * NS
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=whole)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if len(base) < 19:  # years below 1000 are not zero-padded by every strftime
        base = f"{dt.year:04d}" + base[base.index("-") :]
    if rest == 0:
        return base + "Z"
    if isinstance(rest, int):
        frac = f"{rest:09d}".rstrip("0")
    else:  # exact decimal expansion of a Fraction of ns (its denominator divides a power of 10)
        digits = 9
        r = Fraction(rest)
        while (r * 10 ** (digits - 9)).denominator != 1:
            digits += 1
        frac = f"{int(r * 10 ** (digits - 9)):0{digits}d}".rstrip("0")
    return f"{base}.{frac}Z"


class DayCalc:
    """Local calendar day (days since 1970-01-01 in the zone) of an instant, cached per 15 min."""

    __slots__ = ("_cache", "_fixed", "tz")

    SLOT = 900 * NS

    def __init__(self, timezone: str) -> None:
        self.tz = ZoneInfo(timezone)
        self._cache: dict[int, int | None] = {}
        self._fixed: int | None = 0 if timezone in ("UTC", "Etc/UTC", "Z") else None

    def offset_ns(self, inst: Instant) -> int:
        secs = int(inst // NS)
        try:
            dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=secs)
            off = dt.astimezone(self.tz).utcoffset()
        except OverflowError:  # the very first/last hours of years 1 and 9999
            clamp = min(max(secs, (_DAYS_YEAR_1 + 2) * 86400), (_DAYS_YEAR_10000 - 2) * 86400)
            dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=clamp)
            off = dt.astimezone(self.tz).utcoffset()
        assert off is not None
        return (off.days * 86400 + off.seconds) * NS + off.microseconds * 1000

    def day(self, inst: Instant) -> int:
        fixed = self._fixed
        if fixed is not None:
            return int((inst + fixed) // DAY)
        slot = int(inst // self.SLOT)
        cache = self._cache
        try:
            off = cache[slot]
        except KeyError:
            a = self.offset_ns(slot * self.SLOT)
            b = self.offset_ns(slot * self.SLOT + self.SLOT - 1)
            off = a if a == b else None
            if len(cache) > 200_000:
                cache.clear()
            cache[slot] = off
        if off is None:
            off = self.offset_ns(inst)
        return int((inst + off) // DAY)
