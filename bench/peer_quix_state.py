"""The expert Quix Streams peer: per-user active days, DAU and MAU per partition of
`<P>product-events`, and live CSAT per partition of `<P>survey-answers`, on Quix Streams' State API
(`sdf.update(..., stateful=True)`), with no repartition.

usage: BENCH_PREFIX=P BENCH_EXPECT=N BENCH_STATE=dir python bench/peer_quix_state.py
       (prints one JSON line: records, first, last, cpu_first, cpu_last, rss_peak, partitions;
       BENCH_DUMP=1 adds each partition's users with their active days in the window)

The rules and the figures are those of bench/README.md ("The expert peers"), the same as the Kafka
Streams peer (bench/kafka_streams/). How it is written:

- one `StreamingDataFrame` per input topic, consumer group `<P>quix-state` (BENCH_GROUP: another,
  to run again on the same topics), from the earliest
  offset, at-least-once, RocksDB state with changelog topics (Quix's defaults), the commit
  interval at Quix's default 5 s (BENCH_COMMIT_INTERVAL);
- values and keys arrive as bytes (no deserializer of Quix's: a value that is not JSON is skipped,
  not an error) and are decoded once with orjson;
- one stateful `update` per topic (`metadata=True` for the record timestamp): per user (the
  message key, Quix's state prefix) the active days of the last 30 days, packed as 4-byte ints
  with `set_bytes` (no JSON round trip per write), written only when the user gains a day;
  per partition, in the same store and transaction (so restored with the users), the partition's
  clock and the day histograms that give DAU and MAU (users active per day; users per newest
  active day), under a prefix of their own; CSAT answers deduplicated by (user, response id) with
  a 3-day event-time TTL (Quix's documented dedupe idiom) and counted per partition in one-hour
  buckets;
- no `group_by`, no window: every figure is a per-partition count kept current in state.

It stops once it has counted N input records (`app.stop()`; the last checkpoint commits on the
way out). `first`/`last` are the wall-clock instants of the first and of the N-th input record
(like the other contenders: the time to the last record processed); `cpu_first`/`cpu_last` the
process's CPU seconds then (every thread, librdkafka's included); `closed` the instant `app.run()`
returned, the last checkpoint committed (not timed).
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
import time
from array import array
from datetime import date, timedelta
from typing import Any

import orjson
from quixstreams import Application, State, message_context

PREFIX = os.environ["BENCH_PREFIX"]
EXPECT = int(os.environ["BENCH_EXPECT"])
DUMP = bool(os.environ.get("BENCH_DUMP"))
DAY = 86_400_000
HOUR = 3_600_000
FUTURE = HOUR  # ts at most 1 h after the record timestamp
LATE = 48 * HOUR  # and at most 48 h before it
MAX_VALUE = 65_536
WINDOW_DAYS = 30
CSAT_HOURS = 24
DEDUPE_TTL = timedelta(days=3)
PART = b"\x00partition"  # the state prefix of the per-partition counts (user keys are non-empty)
D0 = b"clock"
SESSION_TYPES = frozenset({"session_start", "session_end", "page_view"})
PROPS_NAMES = {  # types whose props must hold these names (strings of 1-128 characters)
    "onboarding_step": ("step",),
    "feature_used": ("feature",),
    "purchase": ("order_id",),
    "return": ("order_id",),
    "ticket_opened": ("ticket_id", "category"),
    "ticket_resolved": ("ticket_id",),
}
SOCIAL_ACTIONS = frozenset({"like", "share", "comment", "mention", "save"})
MAX_DEPTH = 64
TYPE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:[Zz]|([+-])(\d\d):(\d\d))\Z",
    re.ASCII,
)
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

app = Application(
    broker_address=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
    consumer_group=os.environ.get("BENCH_GROUP") or f"{PREFIX}quix-state",
    auto_offset_reset="earliest",
    state_dir=os.environ.get("BENCH_STATE", "/tmp/quix-state"),
    commit_interval=float(os.environ.get("BENCH_COMMIT_INTERVAL", "5")),
    loglevel="WARNING",
)

tally: dict[str, float] = {"in": 0, "first": 0.0, "cpu_first": 0.0, "last": 0.0, "cpu_last": 0.0}
# What each partition computed, for the report: the values written to state, as written.
events_view: dict[int, dict[str, Any]] = {}
answers_view: dict[int, dict[str, Any]] = {}
_day_of: dict[str, int | None] = {}  # "YYYY-MM-DD" -> epoch day (None: no such date)
_minute_of: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM" (a valid one, UTC) -> its epoch ms


def count_in() -> None:
    n = tally["in"] = tally["in"] + 1
    if n == 1:
        tally["first"] = time.time()
        tally["cpu_first"] = time.process_time()
    if n >= EXPECT:
        if n == EXPECT:
            tally["last"], tally["cpu_last"] = time.time(), time.process_time()
        app.stop()


# ---- the record rules (bench/README.md, "The expert peers") ------------------------------------


def decode(value: bytes | None) -> dict[str, Any] | None:
    if value is None or len(value) > MAX_VALUE:
        return None
    try:
        d = orjson.loads(value)  # strict RFC 8259 and UTF-8: NaN, a BOM, bad bytes are errors
    except orjson.JSONDecodeError:
        return None
    if type(d) is not dict:
        return None
    if value.count(b"[") + value.count(b"{") > MAX_DEPTH and _depth(d) > MAX_DEPTH:
        return None  # nested more than 64 levels (the record object is level 1)
    return d


def _depth(v: Any) -> int:
    if type(v) is dict:
        return 1 + max(map(_depth, v.values()), default=0)
    if type(v) is list:
        return 1 + max(map(_depth, v), default=0)
    return 0


def name(v: Any) -> bool:
    """A JSON string of 1-128 characters (an id or a name)."""
    return type(v) is str and 0 < len(v) <= 128


def optional_name(v: Any) -> bool:
    return v is None or (type(v) is str and 0 < len(v) <= 128)


def epoch_day(ymd: str) -> int | None:
    day = _day_of.get(ymd, -1)
    if day == -1:
        try:
            day = date(int(ymd[:4]), int(ymd[5:7]), int(ymd[8:10])).toordinal() - EPOCH_ORDINAL
        except ValueError:
            day = None
        if len(_day_of) > 100_000:
            _day_of.clear()
        _day_of[ymd] = day
    return day


def ts_ms(v: Any) -> int | None:
    """Epoch ms of `ts`: an integer, or an RFC 3339 string; None otherwise."""
    if type(v) is int:
        return v
    if type(v) is not str:
        return None
    if len(v) == 24 and v[16] == ":" and v[19] == "." and v[23] == "Z":  # ...THH:MM:SS.mmmZ
        minute = _minute_of.get(v[:16])
        if minute is not None:
            sec_ms = v[17:19] + v[20:23]
            if sec_ms.isdigit() and sec_ms.isascii() and sec_ms < "60000":
                return minute + int(sec_ms)
    m = RFC3339.match(v)
    if m is None:
        return None
    y, _mo, _d, h, mi, s, frac, sign, oh, om = m.groups()
    hh, mm, ss = int(h), int(mi), int(s)
    if y == "0000" or hh > 23 or mm > 59 or ss > 59:
        return None
    day = epoch_day(v[:10])
    if day is None:
        return None
    ms = (((day * 24 + hh) * 60 + mm) * 60 + ss) * 1000
    if frac:
        ms += int((frac + "00")[:3])
    if sign:
        ohh, omm = int(oh), int(om)
        if ohh > 23 or omm > 59:
            return None
        off = (ohh * 60 + omm) * 60_000
        ms += -off if sign == "+" else off
    elif v[10] == "T" and len(_minute_of) < 100_000:
        _minute_of[v[:16]] = ms - ss * 1000 - (ms - ss * 1000) % 60_000  # its minute, UTC
    return ms


def checked_ts(d: dict[str, Any], key: bytes | None, user: str, record_ts: int) -> int | None:
    """ts if the record is keyed by its user and ts is within [record ts - 48 h, + 1 h]."""
    try:
        if key is None or key != user.encode():
            return None
    except UnicodeEncodeError:
        return None
    ts = ts_ms(d.get("ts"))
    if ts is None or ts > record_ts + FUTURE or ts < record_ts - LATE:
        return None
    return ts


def _part_state(state: State, cache: dict[str, Any]) -> Any:
    """The partition's own state: the same store and transaction as the users', another prefix
    (Quix's State is scoped to the message key; its transaction is the partition's)."""
    tx = state._transaction  # type: ignore[attr-defined]
    if cache.get("tx") is not tx:
        cache["tx"] = tx
        cache["state"] = tx.as_state(prefix=PART)
    return cache["state"]


def _get_int(ps: Any, key: bytes) -> int | None:
    raw = ps.get_bytes(key)
    return None if raw is None else int(raw)


# ---- product events: active days, DAU, MAU -----------------------------------------------------

_events_part: dict[int, dict[str, Any]] = {}


def on_event(value: bytes | None, key: Any, timestamp: int, _headers: Any, state: State) -> None:
    count_in()
    d = decode(value)
    if d is None:
        return
    typ, user = d.get("type"), d.get("user_id")
    if (
        type(typ) is not str
        or typ == "impression"
        or not name(user)
        or not name(d.get("event_id"))
        or TYPE_RE.match(typ) is None
        or not optional_name(d.get("account_id"))
    ):
        return
    sid = d.get("session_id")
    props = d.get("props")
    if (sid is not None and not name(sid)) or (props is not None and type(props) is not dict):
        return
    names = PROPS_NAMES.get(typ)
    if names is not None and (props is None or not all(name(props.get(n)) for n in names)):
        return
    if typ in SESSION_TYPES:
        if sid is None:
            return
    elif typ == "purchase":
        amount = props.get("amount")  # type: ignore[union-attr]  (PROPS_NAMES: props is there)
        try:
            if type(amount) not in (int, float) or not 0 <= float(amount) < float("inf"):
                return
        except OverflowError:  # an integer beyond a double
            return
    elif typ == "social_interaction":
        if props is None or props.get("action") not in SOCIAL_ACTIONS:
            return
    elif typ == "click" and props is not None and not optional_name(props.get("placement")):
        return
    ts = checked_ts(d, key, user, timestamp)
    if ts is not None:
        active(state, user, ts // DAY)


def active(state: State, user: str, day: int) -> None:
    raw = state.get_bytes(b"d")
    days = array("i")
    if raw is not None:
        days.frombytes(raw)
        if day in days:
            return  # already active that day (so not after the clock): the common case
    p = message_context().partition
    cache = _events_part.setdefault(p, {})
    ps = _part_state(state, cache)
    view = events_view.setdefault(p, {"d0": None, "active": {}, "newest": {}, "users": {}})
    d0 = _get_int(ps, D0)
    if d0 is None or day > d0:  # the partition's clock moves: drop the days that left the window
        if d0 is not None:
            for old in range(d0 - WINDOW_DAYS + 1, min(day - WINDOW_DAYS + 1, d0 + 1)):
                ps.delete(b"a%d" % old)
                ps.delete(b"n%d" % old)
                view["active"].pop(old, None)
                view["newest"].pop(old, None)
        d0 = day
        ps.set_bytes(D0, b"%d" % d0)
        view["d0"] = d0
    low = d0 - WINDOW_DAYS + 1
    if day < low:
        return
    newest_before = max(days) if days else None
    kept = array("i", (x for x in days if x >= low))
    kept.append(day)
    state.set_bytes(b"d", kept.tobytes())
    _add(ps, b"a%d" % day, 1, view["active"], day)
    if newest_before is None or day > newest_before:
        if newest_before is not None and newest_before >= low:
            _add(ps, b"n%d" % newest_before, -1, view["newest"], newest_before)
        _add(ps, b"n%d" % day, 1, view["newest"], day)
    if DUMP:
        view["users"][user] = list(kept)


def _add(ps: Any, key: bytes, delta: int, mirror: dict[int, int], day: int) -> None:
    v = (_get_int(ps, key) or 0) + delta
    ps.set_bytes(key, b"%d" % v)
    mirror[day] = v


# ---- survey answers: CSAT ----------------------------------------------------------------------

_answers_part: dict[int, dict[str, Any]] = {}


def on_answer(value: bytes | None, key: Any, timestamp: int, _headers: Any, state: State) -> None:
    count_in()
    d = decode(value)
    if d is None or d.get("survey") != "csat":
        return
    user, rid, score = d.get("user_id"), d.get("response_id"), d.get("score")
    if (
        not name(user)
        or not name(rid)
        or type(score) is not int
        or not 1 <= score <= 5
        or not optional_name(d.get("account_id"))
        or not optional_name(d.get("touchpoint"))
    ):
        return
    ts = checked_ts(d, key, user, timestamp)
    if ts is None:
        return
    try:
        seen = b"r" + rid.encode()
    except UnicodeEncodeError:
        return
    if state.exists(seen):
        return  # a duplicate: the first answer with this response id counts
    state.set_bytes(seen, b"1", ttl=DEDUPE_TTL)
    p = message_context().partition
    cache = _answers_part.setdefault(p, {})
    ps = _part_state(state, cache)
    view = answers_view.setdefault(p, {"h0": None, "hours": {}})
    hour = ts // HOUR
    h0 = _get_int(ps, D0)
    if h0 is None or hour > h0:
        if h0 is not None:
            for old in range(h0 - CSAT_HOURS + 1, min(hour - CSAT_HOURS + 1, h0 + 1)):
                ps.delete(b"c%d" % old)
                view["hours"].pop(old, None)
        h0 = hour
        ps.set_bytes(D0, b"%d" % h0)
        view["h0"] = h0
    if hour <= h0 - CSAT_HOURS:
        return
    raw = ps.get_bytes(b"c%d" % hour)
    n, pos = (0, 0) if raw is None else map(int, raw.split(b","))
    n, pos = n + 1, pos + (score >= 4)
    ps.set_bytes(b"c%d" % hour, b"%d,%d" % (n, pos))
    view["hours"][hour] = (n, pos)


events = app.dataframe(app.topic(f"{PREFIX}product-events", value_deserializer="bytes",
                                 key_deserializer="bytes"))  # fmt: skip
events.update(on_event, stateful=True, metadata=True)
answers = app.dataframe(app.topic(f"{PREFIX}survey-answers", value_deserializer="bytes",
                                  key_deserializer="bytes"))  # fmt: skip
answers.update(on_answer, stateful=True, metadata=True)


def report() -> dict[str, Any]:
    parts: dict[str, dict[str, Any]] = {}
    for p, v in sorted(events_view.items()):
        row = parts.setdefault(str(p), {})
        d0 = v["d0"]
        if d0 is None:
            continue
        low = d0 - WINDOW_DAYS + 1
        row["day"] = d0
        row["dau"] = v["active"].get(d0, 0)
        row["mau"] = sum(c for d, c in v["newest"].items() if low <= d <= d0)
        row["user_days"] = sum(c for d, c in v["active"].items() if low <= d <= d0)
        if DUMP:
            users = {u: sum(1 for x in ds if x >= low) for u, ds in v["users"].items()}
            row["users"] = {u: c for u, c in sorted(users.items()) if c}
    for p, a in sorted(answers_view.items()):
        row = parts.setdefault(str(p), {})
        h0 = a["h0"]
        if h0 is None:
            continue
        window = [c for h, c in a["hours"].items() if h0 - CSAT_HOURS < h <= h0]
        row["hour"] = h0
        row["csat_responses"] = sum(c[0] for c in window)
        row["csat_positive"] = sum(c[1] for c in window)
    return dict(sorted(parts.items(), key=lambda kv: int(kv[0])))


if __name__ == "__main__":
    app.run()
    closed = time.time()
    if tally["in"] < EXPECT:
        sys.exit(f"peer_quix_state: stopped before the end: {tally}")
    print(json.dumps({"records": EXPECT, "first": tally["first"], "last": tally["last"],
                      "cpu_first": tally["cpu_first"], "cpu_last": tally["cpu_last"],
                      "closed": closed,
                      "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "partitions": report()}))  # fmt: skip
