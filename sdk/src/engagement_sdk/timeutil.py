"""Exact event time for validation: RFC 3339 instants and the range of a valid `ts`.

An instant is an integer number of nanoseconds since the Unix epoch. A timestamp written with
more than nine fractional digits is kept exactly as a `Fraction` of nanoseconds; Python compares
and subtracts the two kinds exactly. The engagement-metrics engine uses these same functions
(streams/timeutil.py adds its calendar and formatting helpers).
"""

from __future__ import annotations

import re
from fractions import Fraction

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
