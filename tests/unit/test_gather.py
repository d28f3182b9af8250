"""agents/gather.py `combine_coverage`: a source partition is covered up to X only when every
record up to X is counted, the ones forwarded to another partition included."""

from __future__ import annotations

from agents.gather import combine_coverage


def test_forwarded_records_on_their_way_hold_coverage_back() -> None:
    sources = {
        # partition 3 counted (applied, rejected or forwarded) every record up to 900; it
        # forwarded up to 880 to partition 5, which has applied forwards up to 400 only
        "product-events/3": {
            "counted": 900,
            "forwarded": {"5": 880, "6": 10},
            "applied": {"5": 400, "6": 10},
        },
        # everything forwarded has arrived: the count stands
        "product-events/4": {"counted": 700, "forwarded": {"1": 650}, "applied": {"1": 650}},
        # nothing forwarded
        "survey-answers/3": {"counted": 12},
        # forwarded, nothing applied yet at the destination
        "survey-answers/4": {"counted": 30, "forwarded": {"2": 5}},
        # the owner partition has not reported (another worker's): nothing is claimed
        "survey-answers/5": {"applied": {"2": 8}},
    }
    assert combine_coverage(sources) == {
        "product-events/3": 400,
        "product-events/4": 700,
        "survey-answers/3": 12,
        "survey-answers/4": -1,
        "survey-answers/5": -1,
    }


def test_a_forward_applied_beyond_the_owners_count_claims_nothing_more() -> None:
    # the destination applied records the owner forwarded before a restart of its count:
    # coverage never exceeds what the owner counted
    assert combine_coverage(
        {"t/0": {"counted": 10, "forwarded": {"1": 9}, "applied": {"1": 50}}}
    ) == {"t/0": 10}
