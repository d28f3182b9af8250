"""The peer: DAU, MAU and live CSAT written with Quix Streams, its windowed state as its docs
teach (tumbling and hopping windows with `Count`/`Sum`, `group_by` to a global key).

usage: BENCH_PREFIX=P BENCH_EXPECT=N BENCH_STATE=dir python bench/peer_quix.py
       (prints one JSON line: records, first, last, rss_peak, and the last DAU/MAU/CSAT)

Pipeline (consumer group `<P>quix`, from the earliest offset, at-least-once, RocksDB state with
changelog topics, Quix's defaults otherwise):

- `<P>product-events` (values as bytes) -> count -> JSON decode -> keep activity events (a
  dict with a string `type` other than `impression`, whose `user_id` is the record key) ->
  event time from the payload's `ts` (epoch ms or RFC 3339; the record timestamp otherwise) ->
  per user a 1-day tumbling window `Count` (grace 48 h), `.current()`; a count of 1 is the
  user's first activity of that day (the row's timestamp is the day's start). From there:
  - DAU: `group_by` one global key, 1-day tumbling window `Count`;
  - MAU: per user a 30-day hopping window with a 1-day step over those first-of-day rows; a
    count of 1 is the user's first day in that 30-day window -> `group_by` one global key,
    1-day tumbling window `Count` by window start (grace 33 days: a row is stamped with its
    30-day window's start).
- `<P>survey-answers` -> count -> JSON decode -> CSAT answers with an integer score 1-5 ->
  event time -> `group_by` one global key -> 24-hour hopping window (1-hour step, grace 48 h)
  `Count` and `Sum` of positive answers (score >= 4), `.current()`.

What it does not do that ours does: validation beyond the above, dedupe, the other ~40 metrics,
exactly-once effects across restarts, and records keyed by someone else (ours forwards them to
their user's partition; this job drops them, 0.2% of the mix).

It stops once it has counted N input records and every row sent to a `group_by` has come back
through its global window (the repartition topics are drained). `first`/`last` are the
wall-clock instants of the first input record and of that moment; `cpu_first`/`cpu_last` the
process's CPU seconds then. With N smaller than the backlog (bench/run.py runs this slow design on
its first records), the records after the N-th are read and dropped while the repartition topics
drain (`read` says how many were read in all).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from datetime import datetime, timedelta
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Sum

PREFIX = os.environ["BENCH_PREFIX"]
EXPECT = int(os.environ["BENCH_EXPECT"])
DAY = timedelta(days=1)

app = Application(
    broker_address=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
    consumer_group=f"{PREFIX}quix",
    auto_offset_reset="earliest",
    state_dir=os.environ.get("BENCH_STATE", "/tmp/quix-state"),
    loglevel="WARNING",
)

tally = {"in": 0, "first": 0.0, "cpu_first": 0.0, "sent": 0, "back": 0}
last: dict[str, Any] = {}


def done() -> bool:
    return tally["in"] >= EXPECT and tally["back"] == tally["sent"]


def within(_value: Any) -> bool:
    """Only the first N records count (the rest of a larger backlog is read and dropped)."""
    return tally["in"] <= EXPECT


def count_in(_value: Any) -> None:
    if not tally["in"]:
        tally["first"], tally["cpu_first"] = time.time(), time.process_time()
    tally["in"] += 1
    if done():
        app.stop()


def count_sent(_value: Any) -> None:
    tally["sent"] += 1


def count_back(_value: Any) -> None:
    tally["back"] += 1


def remember(name: str) -> Any:
    def keep(value: Any) -> None:
        last[name] = value
        if done():
            app.stop()

    return keep


def parse(value: bytes | None) -> Any:
    try:
        d = json.loads(value) if value is not None else None
    except ValueError:
        return None
    return d if isinstance(d, dict) else None


def event_ms(value: dict[str, Any], _key: Any, timestamp: int, _headers: Any) -> int:
    ts = value.get("ts")
    if isinstance(ts, int):
        return ts
    if isinstance(ts, str):
        try:
            return int(datetime.fromisoformat(ts).timestamp() * 1000)
        except ValueError:
            pass
    return timestamp


def is_activity(value: Any, key: Any, _timestamp: int, _headers: Any) -> bool:
    if value is None:
        return False
    typ, user = value.get("type"), value.get("user_id")
    return isinstance(typ, str) and typ != "impression" and isinstance(user, str) and key == user


def is_csat(value: Any) -> bool:
    if value is None or value.get("survey") != "csat":
        return False
    score = value.get("score")
    return type(score) is int and 1 <= score <= 5


events = app.dataframe(app.topic(f"{PREFIX}product-events", value_deserializer="bytes",
                                 key_deserializer="str"))  # fmt: skip
events = events.update(count_in).filter(within).apply(parse)
events = events.filter(is_activity, metadata=True).set_timestamp(event_ms)
first_of_day = (
    events.tumbling_window(DAY, grace_ms=timedelta(hours=48), name="user-day")
    .agg(n=Count())
    .current()
    .filter(lambda row: row["n"] == 1)
)

dau = first_of_day.update(count_sent).group_by(lambda _row: "all", name="dau")
dau = dau.update(count_back).tumbling_window(DAY, grace_ms=timedelta(hours=48), name="dau")
dau = dau.agg(dau=Count()).current().update(remember("dau"))

mau = first_of_day.hopping_window(timedelta(days=30), DAY, grace_ms=timedelta(hours=48),
                                  name="user-30d")  # fmt: skip
mau = mau.agg(days=Count()).current().filter(lambda row: row["days"] == 1)
mau = mau.update(count_sent).group_by(lambda _row: "all", name="mau").update(count_back)
mau = mau.tumbling_window(DAY, grace_ms=timedelta(days=33), name="mau")
mau = mau.agg(mau=Count()).current().update(remember("mau"))

answers = app.dataframe(app.topic(f"{PREFIX}survey-answers", value_deserializer="bytes",
                                  key_deserializer="str"))  # fmt: skip
answers = answers.update(count_in).filter(within).apply(parse).filter(is_csat)
answers = answers.set_timestamp(event_ms)
answers = answers.apply(lambda v: {"positive": 1 if v["score"] >= 4 else 0})
csat = answers.update(count_sent).group_by(lambda _v: "all", name="csat").update(count_back)
csat = csat.hopping_window(timedelta(hours=24), timedelta(hours=1),
                           grace_ms=timedelta(hours=48), name="csat-24h")  # fmt: skip
csat = csat.agg(responses=Count(), positive=Sum("positive")).current().update(remember("csat"))


if __name__ == "__main__":
    app.run()
    end, cpu_end = time.time(), time.process_time()
    if not done():
        sys.exit(f"peer_quix: stopped before the end: {tally}")
    print(json.dumps({"records": min(tally["in"], EXPECT), "read": tally["in"],
                      "first": tally["first"], "last": end,
                      "cpu_first": tally["cpu_first"], "cpu_last": cpu_end,
                      "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "rows_regrouped": tally["sent"], "last_rows": last}))  # fmt: skip
