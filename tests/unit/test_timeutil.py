from fractions import Fraction

import pytest

from streams.errors import AsOfError
from streams.timeutil import DAY, NS, DayCalc, format_instant, parse_as_of, parse_rfc3339

# 2026-11-20T10:00:00Z = 1795168800 s (20412 days since 1970-01-01 * 86400 + 36000)
BASE = 1795168800 * NS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T10:00:00Z", BASE),
        ("2026-11-20t10:00:00z", BASE),
        ("2026-11-20T10:00:00.250Z", BASE + 250_000_000),
        ("2026-11-20T10:00:00.000000001Z", BASE + 1),
        ("2026-11-20T11:30:00+01:30", BASE),
        ("2026-11-20T05:00:00-05:00", BASE),
        ("2026-11-20T10:00:00.1234567891Z", Fraction(BASE) + Fraction(1234567891, 10)),
        ("1970-01-01T00:00:00Z", 0),
        ("2024-02-29T00:00:00Z", 19782 * DAY),
        ("0001-01-01T00:00:00Z", -62135596800 * NS),
        ("9999-12-31T23:59:59.999999999Z", 253402300799 * NS + 999_999_999),
    ],
)
def test_valid_instants(text: str, expected: int) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20 10:00:00Z",  # space separator
        "2026-11-20T10:00:00",  # no offset
        "2026-11-20T10:00:60Z",  # second 60
        "2026-11-20T24:00:00Z",
        "2026-11-20T10:60:00Z",
        "2026-02-29T00:00:00Z",  # not a leap year
        "2026-13-01T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2026-11-20T10:00:00.Z",
        "2026-11-20T10:00:00+24:00",
        "2026-11-20T10:00:00+01:60",
        "0001-01-01T00:00:00+01:00",  # year 0 in UTC
        "0000-12-31T23:00:00Z",
        "0000-12-31T23:30:00-01:00",  # written year 0000 (its UTC instant is in year 1)
        "9999-12-31T23:00:00-01:00",  # year 10000 in UTC
        "2026-11-20T10:00:0\u0663Z",  # a non-ASCII digit
        "1795168800000",
        "",
    ],
)
def test_invalid_instants(text: str) -> None:
    assert parse_rfc3339(text) is None


def test_over_precise_instants_order_exactly() -> None:
    a = parse_rfc3339("2026-11-20T10:00:00.0000000001Z")
    b = parse_rfc3339("2026-11-20T10:00:00.0000000002Z")
    assert a is not None and b is not None
    assert BASE < a < b < BASE + 1


def test_format_instant() -> None:
    assert format_instant(BASE) == "2026-11-20T10:00:00Z"
    assert format_instant(BASE + 250_000_000) == "2026-11-20T10:00:00.25Z"
    assert format_instant(Fraction(BASE) + Fraction(1, 10)) == "2026-11-20T10:00:00.0000000001Z"
    assert format_instant(-62135596800 * NS) == "0001-01-01T00:00:00Z"


def test_parse_as_of() -> None:
    assert parse_as_of("1795168800000") == BASE
    assert parse_as_of("2026-11-20T11:00:00+01:00") == BASE
    with pytest.raises(AsOfError):
        parse_as_of("yesterday")
    with pytest.raises(AsOfError):
        parse_as_of("2026-11-20 10:00")


def test_days_across_dst_in_new_york() -> None:
    dc = DayCalc("America/New_York")
    day = dc.day
    # 2026-11-01: clocks fall back at 06:00Z (02:00 EDT -> 01:00 EST); the local day is 25 h long
    start_nov1 = parse_rfc3339("2026-11-01T04:00:00Z")  # 00:00 EDT
    end_nov1 = parse_rfc3339("2026-11-02T05:00:00Z")  # 00:00 EST on Nov 2
    assert start_nov1 is not None and end_nov1 is not None
    assert day(start_nov1) == day(start_nov1 - 1) + 1
    assert day(end_nov1 - 1) == day(start_nov1)
    assert day(end_nov1) == day(start_nov1) + 1
    assert end_nov1 - start_nov1 == 25 * 3600 * NS
    # 2026-03-08: spring forward, a 23 h day
    s = parse_rfc3339("2026-03-08T05:00:00Z")
    e = parse_rfc3339("2026-03-09T04:00:00Z")
    assert s is not None and e is not None
    assert day(s) == day(s - 1) + 1 and day(e - 1) == day(s) and day(e) == day(s) + 1
    # a zone with a 30-minute offset (India, +05:30): 18:29:59Z is still the same local day
    ist = DayCalc("Asia/Kolkata")
    t = parse_rfc3339("2026-11-20T18:30:00Z")
    assert t is not None
    assert ist.day(t) == ist.day(t - 1) + 1
