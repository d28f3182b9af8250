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

from streams.errors import AsOfError

Instant = int | Fraction

NS = 1_000_000_000
MS = 1_000_000
HOUR = 3600 * NS
DAY = 86400 * NS

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))",
    re.ASCII,
)

# Days from 1970-01-01 to 0001-01-01 and to 10000-01-01 (proleptic Gregorian).
_DAYS_YEAR_1 = -719162
_DAYS_YEAR_10000 = 2932897
MIN_INSTANT = _DAYS_YEAR_1 * DAY  # 0001-01-01T00:00:00Z, inclusive
END_INSTANT = _DAYS_YEAR_10000 * DAY  # 10000-01-01T00:00:00Z, exclusive
MIN_MS = MIN_INSTANT // MS
END_MS = END_INSTANT // MS

_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


_HOUR_CACHE: dict[str, int] = {}  # validated "YYYY-MM-DDTHH" -> epoch seconds
_MMSS = {f"{m:02d}:{x:02d}": m * 60 + x for m in range(60) for x in range(60)}
_FRAC_SCALE = (0, 10**8, 10**7, 10**6, 10**5, 10**4, 10**3, 100, 10, 1)


def parse_rfc3339(s: str) -> Instant | None:
    """The exact instant of an RFC 3339 date-time, or None when it is not one (or out of range)."""
    # Fast path for the common `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`: the hour comes from a cache of
    # validated prefixes, minutes and seconds from a table; anything else takes the full parser.
    n = len(s)
    if n >= 20 and s[-1] == "Z" and s[13] == ":":
        hour = _HOUR_CACHE.get(s[:13])
        if hour is not None:
            ms = _MMSS.get(s[14:19])
            if ms is not None:
                if n == 20:
                    return (hour + ms) * NS
                frac = s[20:-1]
                if s[19] == "." and len(frac) <= 9 and frac.isascii() and frac.isdigit():
                    return (hour + ms) * NS + int(frac) * _FRAC_SCALE[len(frac)]
    return _parse_rfc3339_full(s)


def _parse_rfc3339_full(s: str) -> Instant | None:
    m = _RFC3339.fullmatch(s)
    if m is None:
        return None
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    hour, minute, second = int(m[4]), int(m[5]), int(m[6])
    if not (1 <= month <= 12 and year >= 1):
        return None
    mdays = 29 if month == 2 and _leap(year) else _MONTH_DAYS[month - 1]
    if not (1 <= day <= mdays and hour <= 23 and minute <= 59 and second <= 59):
        return None
    secs = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    if m[8] is not None and s[10] == "T" and MIN_INSTANT <= secs * NS < END_INSTANT - HOUR:
        if len(_HOUR_CACHE) > 100_000:
            _HOUR_CACHE.clear()
        _HOUR_CACHE[s[:13]] = secs - minute * 60 - second
    if m[9] is not None:
        oh, om = int(m[10]), int(m[11])
        if oh > 23 or om > 59:
            return None
        off = oh * 3600 + om * 60
        secs -= off if m[9] == "+" else -off
    inst: Instant = secs * NS
    frac = m[7]
    if frac is not None:
        if len(frac) <= 9:
            inst += int(frac.ljust(9, "0"))
        else:
            inst = Fraction(inst) + Fraction(int(frac), 10 ** (len(frac) - 9))
            if inst.denominator == 1:
                inst = int(inst)
    if not (MIN_INSTANT <= inst < END_INSTANT):
        return None
    return inst


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
