"""agents/coverage.py `combine_coverage`: a source partition is covered up to X only when every
record up to X is counted, the ones forwarded to another partition included."""

from __future__ import annotations

from agents.coverage import KEEP_FORWARDS, RecentForwards, combine_coverage


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


def test_known_forwards_hold_coverage_back_only_to_the_first_one_not_applied() -> None:
    # partition 3 forwarded 100, 500 and 880 to partition 5, which applied up to 500: every
    # record before 880 is counted (nothing was forwarded to 5 between 500 and 880)
    src = {
        "counted": 900,
        "forwarded": {"5": 880},
        "applied": {"5": 500},
        "pending": {"5": {"after": -1, "offsets": [100, 500, 880]}},
    }
    assert combine_coverage({"t/3": src}) == {"t/3": 879}
    # all applied: the owner's count stands
    assert combine_coverage({"t/3": {**src, "applied": {"5": 880}}}) == {"t/3": 900}
    # the forwards after 400 are not all known (the log starts after 450): back to 400
    unknown = {**src, "applied": {"5": 400}, "pending": {"5": {"after": 450, "offsets": [880]}}}
    assert combine_coverage({"t/3": unknown}) == {"t/3": 400}


def test_the_log_of_recent_forwards() -> None:
    log = RecentForwards({("product-events", 5): 40})  # the stored meta: the last was 40
    log.note("product-events", 5, [60, 70])
    log.note("product-events", 5, [70, 65, 90])  # redelivered ones are known already
    assert log.after("product-events", 5, -1) == (40, [60, 70, 90])
    assert log.after("product-events", 5, 65) == (65, [70, 90])
    assert log.after("survey-answers", 2, -1) == (-1, [])
    # the oldest offsets are forgotten past KEEP_FORWARDS: the floor moves up
    log.note("product-events", 5, list(range(100, 100 + KEEP_FORWARDS)))
    after, offsets = log.after("product-events", 5, -1)
    assert after == 90 and offsets == list(range(100, 100 + KEEP_FORWARDS))
    # combined with a destination that applied 95: coverage up to 99
    src = {
        "counted": 500,
        "forwarded": {"5": 100 + KEEP_FORWARDS - 1},
        "applied": {"5": 95},
        "pending": {"5": {"after": after, "offsets": offsets}},
    }
    assert combine_coverage({"product-events/5": src}) == {"product-events/5": 99}
