"""Generators of replay files (kcat-style JSON lines) for the engine-vs-oracle property tests.

One builder, two sources of choices:
- `scenarios()`: a Hypothesis strategy (every choice is a draw, so failures shrink);
- `generate(seed, stories)`: a plain seeded generator for large cases (random.Random).

Both produce a `Scenario(lines, config, as_of)`.

What is covered: every event type of METRICS.md with valid and invalid props, both topics, the
three surveys (with and without touchpoint, scores in and out of range, `9.0`, `"9"`), every
reject reason (too_large around 65,536 bytes, bad_json: NaN/Infinity/BOM/invalid UTF-8/lone
surrogates/depth 65 vs 64/tombstones, schema: ids, types, props, amounts and many `ts` forms,
future and too_late around their bounds), duplicates with different content, redeliveries,
other topics, keys that differ from `user_id`, time zones with a DST change inside the data.

Generation constraints, so that an engine that prunes state as the contract allows ("How long
identities must be remembered") must agree with the batch oracle:
- record timestamps are non-decreasing in file order (items are sorted by record ts; only
  redeliveries, which change nothing, repeat an older record ts);
- a line that repeats an event_id/response_id of the same user arrives (record ts) no later than
  the earliest `ts` of that identity + the allowed lateness + 1 hour (else it gets a fresh id);
- all events of one session lie within 24 hours, all events of one ticket within 7 days, an
  order id is reused only within 90 days of the order.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

X = TypeVar("X")

PRODUCT = "product-events"
SURVEY = "survey-answers"

PS = 10**12  # instants are integer picoseconds since the epoch in the generator
MS = 10**9  # picoseconds per millisecond
SEC = PS
MINUTE = 60 * SEC
HOUR = 3600 * SEC
DAY = 24 * HOUR

TIMEZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"]
# UTC dates near which the as-of instant falls; each has a DST change of some zone within the
# 40 days before it (US: 2026-03-08, 2026-11-01; EU: 2026-03-29, 2026-10-25; Lord Howe:
# 2026-04-05, 2026-10-04).
AS_OF_DATES = [
    date(2026, 11, 1),  # D0 is a 25-hour day in New York
    date(2026, 3, 8),  # D0 is a 23-hour day in New York
    date(2026, 10, 25),
    date(2026, 11, 2),
    date(2026, 11, 20),
    date(2026, 3, 9),
    date(2026, 3, 30),
    date(2026, 4, 6),
    date(2026, 10, 5),
    date(2026, 10, 26),
]
OFFSETS = ["Z", "z", "+00:00", "-00:00", "+05:30", "-08:00", "+01:00", "+14:00", "-23:59", "+23:59"]
FEATURES = ["export", "import", "search", "dash board", "ünïcode"]
TOUCHPOINTS = ["web", "support", "email", "in_app"]
ACTIONS = ["like", "share", "comment", "mention", "save"]
CATEGORIES = ["billing", "bug", "how-to"]
PLACEMENTS = ["hero", "sidebar", "footer"]
CUSTOM_TYPES = ["level_up", "x" + "a" * 63, "report_viewed2", "a"]
ACCOUNTS = ["acme", "globex", "initech"]


# ---------------------------------------------------------------------------------------------
# Choices
# ---------------------------------------------------------------------------------------------


class Chooser:
    """The source of every choice; subclasses wrap random.Random or Hypothesis' draw."""

    def int(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def bool(self, p: float) -> bool:
        """True with probability p; shrinks towards False."""
        return self.int(0, 999) >= 1000 - round(p * 1000)

    def pick(self, seq: Sequence[X]) -> X:
        """Shrinks towards the first element."""
        return seq[self.int(0, len(seq) - 1)]

    def weighted(self, options: Sequence[tuple[int, X]]) -> X:
        total = sum(w for w, _ in options)
        r = self.int(0, total - 1)
        for w, value in options:
            if r < w:
                return value
            r -= w
        raise AssertionError("unreachable")


class RandomChooser(Chooser):
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


class DrawChooser(Chooser):
    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        self.draw = draw

    def int(self, lo: int, hi: int) -> int:
        return int(self.draw(st.integers(lo, hi)))


# ---------------------------------------------------------------------------------------------
# JSON text with non-standard pieces
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A JSON token written as is (`1e400`, `NaN`, `9.0`, ...)."""

    text: str


@dataclass
class Pairs:
    """An object with possibly repeated member names."""

    pairs: list[tuple[str, Any]]


def dumps(value: Any, ensure_ascii: bool = False, compact: bool = False) -> str:
    sep = "," if compact else ", "
    colon = ":" if compact else ": "

    def go(v: Any) -> str:
        if isinstance(v, Raw):
            return v.text
        if isinstance(v, Pairs):
            return "{" + sep.join(key(k) + colon + go(x) for k, x in v.pairs) + "}"
        if isinstance(v, dict):
            return "{" + sep.join(key(k) + colon + go(x) for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + sep.join(go(x) for x in v) + "]"
        return json.dumps(v, ensure_ascii=ensure_ascii)

    def key(k: str) -> str:
        return json.dumps(k, ensure_ascii=ensure_ascii)

    return go(value)


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


# ---------------------------------------------------------------------------------------------
# Scenario
# ---------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    lines: list[bytes]
    config: dict[str, Any]
    as_of: str

    def __repr__(self) -> str:  # readable falsifying examples
        body = "\n".join(f"    {line!r}," for line in self.lines)
        return f"Scenario(config={self.config!r}, as_of={self.as_of!r}, lines=[\n{body}\n])"


@dataclass
class Item:
    """One record before it becomes a line."""

    topic: str
    obj: Any  # dict / Pairs / str (payload text) / None (tombstone)
    ts: int | None  # intended event instant (ps), None if unknown
    user: Any = None
    kind: str = "normal"  # normal | future | too_late | exact (record ts given)
    record_ms: int | None = None
    copyable: bool = True  # may be copied as a duplicate
    id_field: str | None = None  # "event_id" / "response_id" when obj is a dict with one
    seq: int = 0


@dataclass
class Builder:
    ch: Chooser
    config: dict[str, Any] = field(default_factory=dict)
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    T: int = 0  # ps
    lateness_ms: int = 48 * 3600 * 1000
    items: list[Item] = field(default_factory=list)
    with_ids: list[Item] = field(default_factory=list)  # items with a string user and id
    users: list[str] = field(default_factory=list)
    home_account: dict[str, str | None] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ---- ids -------------------------------------------------------------------------------
    def fresh(self, prefix: str) -> str:
        n = next(self.counter)
        style = self.ch.weighted([(90, "plain"), (5, "unicode"), (5, "long")])
        if style == "unicode":
            return f"{prefix}😀é{n}"
        if style == "long":
            base = f"{prefix}{n}"
            return "x" * (128 - len(base)) + base  # exactly 128 code points
        return f"{prefix}{n}"

    # ---- time ------------------------------------------------------------------------------
    def local_midnight(self, days_from_d0: int) -> int:
        d0 = datetime.fromtimestamp(self.T // PS, UTC).astimezone(self.tz).date()
        d = d0 + timedelta(days=days_from_d0)
        return int(datetime(d.year, d.month, d.day, tzinfo=self.tz).timestamp()) * PS

    def in_local_day(self, days_from_d0: int) -> int:
        start, end = self.local_midnight(days_from_d0), self.local_midnight(days_from_d0 + 1)
        return start + self.ch.int(0, (end - start) // MS - 1) * MS

    def epsilon(self) -> int:
        return self.ch.pick([0, 0, MS, -MS, 1000, -1000, 100, -100, SEC, -SEC])

    def special(self) -> int:
        anchors = [
            self.T,
            self.T - HOUR,
            self.T - DAY,
            self.T - 7 * DAY,
            self.T - 30 * DAY,
            self.T - 14 * DAY,
            self.local_midnight(self.ch.int(-40, 1)),
        ]
        return self.ch.pick(anchors) + self.epsilon()

    def when(self) -> int:
        """An event instant: spread over ~42 days before T, denser near T and at edges."""
        how = self.ch.weighted([(35, "near"), (35, "spread"), (20, "special"), (10, "day")])
        if how == "near":
            return self.T - self.ch.int(-2 * 3600, 3 * 86400) * SEC + self.ch.int(0, 999) * MS
        if how == "spread":
            return self.T - self.ch.int(-86400, 42 * 86400) * SEC + self.ch.int(0, 999) * MS
        if how == "special":
            return self.special()
        return self.in_local_day(self.ch.int(-40, 0))

    def enc_ts(self, t: int) -> Any:
        """A valid JSON encoding of the instant t (ps): integer ms or an RFC 3339 string."""
        if t % MS == 0 and self.ch.bool(0.2):
            return t // MS
        return self.rfc3339(t)

    def rfc3339(self, t: int, offset: str | None = None) -> str:
        if offset is None:
            offset = self.ch.weighted([(50, "Z"), (50, self.ch.pick(OFFSETS))])
        whole, frac = divmod(t, PS)
        minutes = 0
        if offset not in ("Z", "z"):
            sign = -1 if offset[0] == "-" else 1
            minutes = sign * (int(offset[1:3]) * 60 + int(offset[4:6]))
        try:
            wall = datetime.fromtimestamp(whole, timezone(timedelta(minutes=minutes)))
        except (OverflowError, ValueError, OSError):
            offset, wall = "Z", datetime.fromtimestamp(whole, UTC)
        digits = f"{frac:012d}".rstrip("0")
        pad = self.ch.weighted([(70, 0), (10, 3), (10, 9), (10, 12)])
        digits = digits.ljust(pad, "0") if len(digits) < pad else digits
        sep = "t" if self.ch.bool(0.1) else "T"
        text = f"{wall.year:04d}-{wall:%m-%d}{sep}{wall:%H:%M:%S}"
        return text + ("." + digits if digits else "") + offset

    # ---- records ---------------------------------------------------------------------------
    def account_fields(self, user: str) -> dict[str, Any]:
        home = self.home_account.get(user)
        choice = self.ch.weighted([(80, "home"), (8, "none"), (6, "null"), (6, "other")])
        if choice == "home":
            return {} if home is None else {"account_id": home}
        if choice == "null":
            return {"account_id": None}
        if choice == "other":
            return {"account_id": self.ch.pick(ACCOUNTS)}
        return {}

    def event(
        self,
        etype: str,
        user: str,
        t: int,
        *,
        props: dict[str, Any] | None = None,
        session: str | None = None,
        eid: str | None = None,
    ) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "event_id": eid or self.fresh("e"),
            "type": etype,
            "user_id": user,
            "ts": self.enc_ts(t),
        }
        obj.update(self.account_fields(user))
        if session is not None:
            obj["session_id"] = session
        if props is not None:
            obj["props"] = props
        elif self.ch.bool(0.1):
            obj["props"] = self.ch.pick([None, {}, {"anything": [1, {"x": None}]}])
        if self.ch.bool(0.05):
            obj["source"] = self.ch.pick(["web", 5, None, {"deep": [[["ok"]]]}])
        if self.ch.bool(0.05):
            obj = dict(reversed(list(obj.items())))
        return obj

    def answer(
        self,
        survey: str,
        score: Any,
        user: str,
        t: int,
        touchpoint: str | None = None,
        rid: str | None = None,
    ) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "response_id": rid or self.fresh("r"),
            "survey": survey,
            "score": score,
            "user_id": user,
            "ts": self.enc_ts(t),
        }
        obj.update(self.account_fields(user))
        if touchpoint is not None:
            obj["touchpoint"] = touchpoint
        elif self.ch.bool(0.1):
            obj["touchpoint"] = None
        if self.ch.bool(0.3):
            obj["comment"] = self.ch.pick(["fast!", "", None, "é" * 300])
        return obj

    def emit(
        self,
        obj: Any,
        t: int | None,
        *,
        topic: str = PRODUCT,
        kind: str = "normal",
        copyable: bool = True,
        record_ms: int | None = None,
    ) -> Item:
        user = obj.get("user_id") if isinstance(obj, dict) else None
        id_field = None
        if isinstance(obj, dict):
            id_field = "event_id" if topic == PRODUCT else "response_id"
        item = Item(
            topic=topic,
            obj=obj,
            ts=t,
            user=user,
            kind=kind,
            record_ms=record_ms,
            copyable=copyable and isinstance(obj, dict),
            id_field=id_field,
            seq=len(self.items),
        )
        self.items.append(item)
        if (
            isinstance(obj, dict)
            and isinstance(item.user, str)
            and isinstance(obj.get(id_field or ""), str)
        ):
            self.with_ids.append(item)
        return item

    def user(self) -> str:
        return self.ch.pick(self.users)

    # ---- stories ---------------------------------------------------------------------------
    def story_signup(self) -> None:
        if self.ch.bool(0.6):  # a new user, who may then appear in later stories
            user = self.fresh("n")
            self.home_account[user] = self.ch.pick([None, None, *ACCOUNTS])
            if self.ch.bool(0.5):
                self.users.append(user)
        else:
            user = self.user()
        day = self.ch.weighted(
            [
                (30, self.ch.int(-14, -7)),
                (30, self.ch.int(-40, 0)),
                (10, self.ch.int(-37, -31)),
                (10, self.ch.int(-9, -1)),
                (10, 0),
            ]
        )
        S = self.in_local_day(day) if self.ch.bool(0.8) else self.special()
        self.emit(self.event("signup", user, S), S)
        if self.ch.bool(0.15):  # a later (or late-arriving earlier) signup
            t = S + self.ch.int(-3 * 3600, 5 * 86400) * SEC
            self.emit(self.event("signup", user, t), t)
        for etype in ("profile_completed", "key_action"):
            if self.ch.bool(0.6):
                edge = self.ch.pick([0, 7 * DAY, 7 * DAY - 1000, 7 * DAY - MS, 0])
                t = S + (edge if self.ch.bool(0.3) else self.ch.int(-3600, 9 * 86400) * SEC)
                self.emit(self.event(etype, user, t), t)
        steps = list(
            self.config.get("funnel_steps", ["welcome", "profile", "invite", "tour", "done"])
        )
        for step in steps:
            if self.ch.bool(0.5):
                t = S + self.ch.int(-600, 3 * 86400) * SEC
                self.emit(self.event("onboarding_step", user, t, props={"step": step}), t)
        for n in (1, 7, 30):
            if self.ch.bool(0.4):
                t = S + n * DAY + self.ch.int(-12 * 3600, 12 * 3600) * SEC
                self.emit(self.random_event(user, t), t)

    def random_event(self, user: str, t: int) -> dict[str, Any]:
        etype = self.ch.weighted(
            [
                (15, "key_action"),
                (15, "feature_used"),
                (15, "click"),
                (15, "impression"),
                (10, "social_interaction"),
                (8, "custom"),
                (5, "profile_completed"),
                (5, "onboarding_step"),
            ]
        )
        props: dict[str, Any] | None = None
        if etype == "feature_used":
            props = {"feature": self.ch.pick(FEATURES)}
        elif etype in ("click", "impression"):
            props = self.ch.weighted(
                [(50, {"placement": self.ch.pick(PLACEMENTS)}), (30, {}), (20, {"placement": None})]
            )
        elif etype == "social_interaction":
            props = {"action": self.ch.pick(ACTIONS)}
        elif etype == "onboarding_step":
            props = {"step": self.ch.pick(["welcome", "profile", "invite", "tour", "done"])}
        elif etype == "custom":
            etype = self.ch.pick(CUSTOM_TYPES)
        return self.event(etype, user, t, props=props)

    def story_activity(self) -> None:
        user = self.user()
        for _ in range(self.ch.int(1, 4)):
            t = self.when() if self.ch.bool(0.9) else self.T - self.ch.int(30, 70) * DAY
            self.emit(self.random_event(user, t), t)

    def story_session(self) -> None:
        user = self.user()
        sid = self.fresh("s")
        t0 = self.when()
        # every event of a session lies in [t0 - 30 min, t0 + 21 h] (copies: +-1 h): < 24 h
        hours = self.ch.weighted([(80, 2), (20, 20)])
        if self.ch.bool(0.9):
            self.emit(self.event("session_start", user, t0, session=sid), t0)
        for _ in range(self.ch.weighted([(30, 0), (40, 1), (20, 2), (10, 3)])):
            t = t0 + self.ch.int(-60, hours * 3600) * SEC
            self.emit(
                self.event(
                    "page_view", user, t, session=sid, props=self.ch.pick([None, {"path": "/home"}])
                ),
                t,
            )
        if self.ch.bool(0.85):
            t_end = t0 + self.ch.weighted(
                [(85, self.ch.int(0, (hours + 1) * 3600) * SEC), (15, -self.ch.int(0, 1800) * SEC)]
            )
            self.emit(self.event("session_end", user, t_end, session=sid), t_end)
        if self.ch.bool(0.15):  # a second start or end of the same session
            etype = self.ch.pick(["session_start", "session_end", "page_view"])
            t = t0 + self.ch.int(-1800, (hours + 1) * 3600) * SEC
            self.emit(self.event(etype, user, t, session=sid), t)

    def story_ticket(self) -> None:
        user = self.user()
        tid = self.fresh("k")
        t0 = self.when()
        if self.ch.bool(0.9):
            self.emit(
                self.event(
                    "ticket_opened",
                    user,
                    t0,
                    props={"ticket_id": tid, "category": self.ch.pick(CATEGORIES)},
                ),
                t0,
            )
        if self.ch.bool(0.7):
            t = (
                t0
                + self.ch.weighted(
                    [
                        (70, self.ch.int(0, 5 * 86400)),
                        (10, self.ch.int(5 * 86400, 6 * 86400)),
                        (10, 86400),
                        (10, -self.ch.int(0, 3600)),
                    ]
                )
                * SEC
            )
            self.emit(self.event("ticket_resolved", user, t, props={"ticket_id": tid}), t)
        if self.ch.bool(0.15):
            etype = self.ch.pick(["ticket_opened", "ticket_resolved"])
            t = t0 + self.ch.int(0, 6 * 86400) * SEC  # a ticket spans < 7 days
            props = {"ticket_id": tid}
            if etype == "ticket_opened":
                props["category"] = "again"
            self.emit(self.event(etype, user, t, props=props), t)

    def amount(self) -> Any:
        return self.ch.weighted(
            [
                (40, self.ch.int(0, 50000) / 100),
                (20, self.ch.int(0, 500)),
                (5, 0),
                (5, -0.0),
                (5, Raw("1E2")),
                (5, 10**15 + 1),
                (3, Raw("1e300")),
                (3, 10**20),
            ]
        )

    def story_order(self) -> None:
        user = self.user()
        oid = self.fresh("o")
        old = False
        if self.ch.bool(0.1):
            t0 = self.T - 90 * DAY + self.epsilon()
        elif self.ch.bool(0.1):  # an old order, repeated and returned ~3 months later
            t0, old = self.T - self.ch.int(85 * 86400, 92 * 86400) * SEC, True
        else:
            t0 = self.when()
        if self.ch.bool(0.9):
            self.emit(
                self.event("purchase", user, t0, props={"order_id": oid, "amount": self.amount()}),
                t0,
            )
        if self.ch.bool(0.15):  # the same order again (different event, different amount)
            t = t0 + self.ch.int(-3600, 86400) * SEC
            self.emit(
                self.event("purchase", user, t, props={"order_id": oid, "amount": self.amount()}), t
            )
        for _ in range(self.ch.weighted([(65, 0), (30, 1), (5, 2)])):
            t = t0 + self.ch.int(-3600, 10 * 86400) * SEC
            self.emit(self.event("return", user, t, props={"order_id": oid}), t)
        if old:  # still remembered: within 90 days of the order's ts
            for etype in ("purchase", "return"):
                if self.ch.bool(0.5):
                    t = t0 + self.ch.int(80 * 86400, 89 * 86400) * SEC
                    props = {"order_id": oid, "amount": self.amount()}
                    if etype == "return":
                        del props["amount"]
                    self.emit(self.event(etype, user, t, props=props), t)

    def story_subscription(self) -> None:
        user = self.user()
        if self.ch.bool(0.5):  # subscribed before the period; maybe cancels within it
            t = self.T - self.ch.int(31 * 86400, 80 * 86400) * SEC
            self.emit(self.event("subscription_started", user, t), t)
            if self.ch.bool(0.5):
                t = self.T - self.ch.int(0, 30 * 86400) * SEC
                self.emit(self.event("subscription_cancelled", user, t), t)
            if self.ch.bool(0.5):  # and buys something in the last 30 days (CLV)
                t = self.T - self.ch.int(0, 30 * 86400) * SEC
                props = {"order_id": self.fresh("o"), "amount": self.amount()}
                self.emit(self.event("purchase", user, t, props=props), t)
            return
        for _ in range(self.ch.int(1, 3)):
            how = self.ch.weighted([(40, "any"), (30, "edge"), (20, "tie"), (10, "old")])
            if how == "any":
                t = self.when()
            elif how == "old":
                t = self.T - self.ch.int(31 * 86400, 80 * 86400) * SEC
            else:
                t = self.T - 30 * DAY + self.epsilon()
            if how == "tie":
                for etype in ("subscription_started", "subscription_cancelled"):
                    self.emit(self.event(etype, user, t), t)
                continue
            etype = self.ch.pick(["subscription_started", "subscription_cancelled"])
            self.emit(self.event(etype, user, t), t)

    def story_survey(self) -> None:
        user = self.user()
        for _ in range(self.ch.int(1, 3)):
            survey = self.ch.pick(["csat", "nps", "ces"])
            low, high = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}[survey]
            t = self.ch.weighted(
                [
                    (50, self.when()),
                    (
                        50,
                        self.ch.pick(
                            [
                                self.T - HOUR,
                                self.T - DAY,
                                self.T,
                                self.T - 7 * DAY,
                                self.T - 30 * DAY,
                            ]
                        )
                        + self.epsilon(),
                    ),
                ]
            )
            tp = self.ch.pick([None, None, *TOUCHPOINTS])
            self.emit(self.answer(survey, self.ch.int(low, high), user, t, tp), t, topic=SURVEY)
            if self.ch.bool(0.2):  # another answer at the same instant (latest: the lower)
                score = self.ch.int(low, high)
                self.emit(self.answer(survey, score, user, t, tp), t, topic=SURVEY)

    def story_dormant(self) -> None:
        user = self.fresh("d")
        self.home_account[user] = None
        last = (
            self.T
            - 14 * DAY
            + self.ch.pick(
                [0, HOUR, -HOUR, DAY, -DAY, self.epsilon(), -self.ch.int(0, 86400) * SEC]
            )
        )
        for k in range(self.ch.int(0, 2)):
            t = last - (k + 1) * self.ch.int(1, 5 * 86400) * SEC
            self.emit(self.event("key_action", user, t), t)
        self.emit(
            self.event(
                self.ch.pick(["key_action", "click", "impression"]),
                user,
                last,
                props={} if self.ch.bool(0.5) else None,
            ),
            last,
        )

    # ---- invalid records -------------------------------------------------------------------
    def valid_obj(self, t: int) -> tuple[str, dict[str, Any]]:
        user = self.user()
        if self.ch.bool(0.25):
            survey = self.ch.pick(["csat", "nps", "ces"])
            return SURVEY, self.answer(survey, 3, user, t, self.ch.pick([None, "web"]))
        etype = self.ch.pick(
            [
                "purchase",
                "page_view",
                "click",
                "key_action",
                "ticket_opened",
                "social_interaction",
                "onboarding_step",
                "feature_used",
                "return",
                "ticket_resolved",
                "signup",
            ]
        )
        props: dict[str, Any] | None = {
            "purchase": {"order_id": self.fresh("o"), "amount": 10},
            "click": {"placement": "hero"},
            "ticket_opened": {"ticket_id": self.fresh("k"), "category": "bug"},
            "social_interaction": {"action": "like"},
            "onboarding_step": {"step": "welcome"},
            "feature_used": {"feature": "export"},
            "return": {"order_id": self.fresh("o")},
            "ticket_resolved": {"ticket_id": self.fresh("k")},
        }.get(etype)
        session = self.fresh("s") if etype == "page_view" else None
        return PRODUCT, self.event(etype, user, t, props=props, session=session)

    def story_invalid(self) -> None:
        t = self.when()
        topic, obj = self.valid_obj(t)
        what = self.ch.weighted(
            [
                (12, "schema"),
                (8, "ts"),
                (6, "bad_json"),
                (4, "size"),
                (5, "future"),
                (5, "too_late"),
                (2, "edge_year"),
                (3, "survey"),
            ]
        )
        if what == "future":
            self.emit(obj, t, topic=topic, kind="future")
        elif what == "too_late":
            self.emit(obj, t, topic=topic, kind="too_late")
        elif what == "schema":
            self.emit(self.break_schema(topic, obj), t, topic=topic, copyable=False)
        elif what == "survey":
            survey = self.ch.pick(["csat", "nps", "ces"])
            score = self.ch.pick(
                [Raw("9.0"), "9", True, None, 0, 6, 8, 11, -1, 10**30, Raw("1e400"), Raw("5.5")]
            )
            ans = self.answer(survey, score, self.user(), t)
            self.emit(ans, t, topic=SURVEY, copyable=False)
        elif what == "ts":
            obj["ts"] = self.bad_ts(t)
            self.emit(obj, t, topic=topic, copyable=False)
        elif what == "bad_json":
            self.emit(self.break_json(obj), t, topic=topic, copyable=False)
        elif what == "size":
            self.emit(self.sized(obj), t, topic=topic, copyable=False)
        else:
            self.edge_year(topic, obj)

    def break_schema(self, topic: str, obj: dict[str, Any]) -> Any:
        obj = dict(obj)
        how = self.ch.pick(
            [
                "missing",
                "null_required",
                "type",
                "long",
                "empty",
                "pattern",
                "props",
                "amount",
                "action",
                "not_object",
                "account",
                "session",
                "dup_member",
            ]
        )
        required = (
            ["event_id", "type", "user_id", "ts"]
            if topic == PRODUCT
            else ["response_id", "survey", "score", "user_id", "ts"]
        )
        if how == "missing":
            del obj[self.ch.pick(required)]
        elif how == "null_required":
            obj[self.ch.pick(required)] = None
        elif how == "type":
            obj[self.ch.pick(required)] = self.ch.pick([5, ["x"], {"x": 1}, True, 1.5])
        elif how == "long":
            obj[self.ch.pick(["event_id", "user_id", "response_id"])] = "y" * 129
        elif how == "empty":
            obj["user_id"] = ""
        elif how == "pattern" and topic == PRODUCT:
            obj["type"] = self.ch.pick(["Click", "1abc", "a" * 65, "a-b", "", "é", "a b"])
        elif how == "props" and topic == PRODUCT:
            obj["props"] = self.ch.pick(["x", 5, ["step"], True])
        elif how == "amount" and topic == PRODUCT:
            obj["type"], obj["props"] = (
                "purchase",
                {
                    "order_id": "o-bad",
                    "amount": self.ch.pick(
                        [
                            -1,
                            -0.01,
                            "12",
                            True,
                            None,
                            Raw("1e400"),
                            Raw("-1e400"),
                            int("9" * 400),
                            [1],
                        ]
                    ),
                },
            )
        elif how == "action" and topic == PRODUCT:
            obj["type"], obj["props"] = (
                "social_interaction",
                {"action": self.ch.pick(["poke", "Like", "", None, 5])},
            )
        elif how == "not_object":
            return self.ch.pick(["[]", "1", '"x"', "null", "true", "[{}]"])
        elif how == "account":
            obj["account_id"] = self.ch.pick(["", 5, "z" * 129, ["acme"]])
        elif how == "session" and topic == PRODUCT:
            obj["type"] = self.ch.pick(["session_start", "session_end", "page_view"])
            obj["session_id"] = self.ch.pick([None, 5, ""])
        elif how == "dup_member":
            # the last member wins: a valid first value shadowed by an invalid one
            return Pairs([*obj.items(), ("user_id", 42)])
        else:
            obj["user_id"] = None
        return obj

    def bad_ts(self, t: int) -> Any:
        good = self.rfc3339(t, offset="Z")
        ms = t // MS
        return self.ch.pick(
            [
                good.replace("T", " ").replace("t", " "),
                good[:-1],  # no offset
                float(ms) + 0.5,
                Raw(f"{ms}.0"),
                Raw(f"{ms / 1000:e}"),
                str(ms),
                good[:17] + "60" + good[19:],  # second 60
                good[:11] + "24" + good[13:],  # hour 24
                "2026-02-29T10:00:00Z",
                "2026-04-31T10:00:00Z",
                good[:19] + ".Z",
                good[:19] + "+0100",
                good[:19] + "+24:00",
                "9999-12-31T23:30:00-01:00",  # UTC year 10000
                "0001-01-01T00:30:00+01:00",  # UTC year 0
                -62135596800001,
                253402300800000,
                True,
                None,
                "",
                good + " ",
                good.lower(),  # a valid form: t and z
            ]
        )

    def break_json(self, obj: dict[str, Any]) -> Any:
        text = dumps(obj)
        how = self.ch.pick(
            [
                "nan",
                "inf",
                "-inf",
                "bom",
                "surrogate",
                "deep",
                "trailing",
                "truncated",
                "garbage",
                "single",
                "empty",
                "null",
                "ok_deep",
            ]
        )
        if how in ("nan", "inf", "-inf"):
            token = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[how]
            return text[:-1] + ', "extra": ' + token + "}"
        if how == "bom":
            return "\ufeff" + text
        if how == "surrogate":
            return (
                text[:-1] + ', "extra": "' + self.ch.pick(["\ud800", "\udfff", "a\udc00b"]) + '"}'
            )
        if how in ("deep", "ok_deep"):
            n = 64 if how == "deep" else 63  # the record object is level 1
            inner = self.ch.pick(["[" * n + "]" * n, '{"a":' * n + "1" + "}" * n])
            return text[:-1] + ', "extra": ' + inner + "}"
        if how == "trailing":
            return text[:-1] + ",}"
        if how == "truncated":
            return text[: self.ch.int(0, len(text) - 1)]
        if how == "garbage":
            return text + self.ch.pick([" x", "{}", "\x00"])
        if how == "single":
            return text.replace('"', "'")
        if how == "empty":
            return self.ch.pick(["", "  ", "\n"])
        return None  # a tombstone

    def sized(self, obj: dict[str, Any]) -> str:
        target = 65536 + self.ch.pick([0, 1, -1, 2, 1000])
        tail = self.ch.pick(["", "é", "😀", "\ud800"])
        head = dumps(obj)[:-1] + ', "pad": "'
        end = tail + '"}'
        fill = (
            target
            - len(head.encode("utf-8", "surrogatepass"))
            - len(end.encode("utf-8", "surrogatepass"))
        )
        return head + "p" * max(fill, 0) + end

    def edge_year(self, topic: str, obj: dict[str, Any]) -> None:
        first_ms, last_ms = -62135596800000, 253402300799999
        which = self.ch.pick(["first", "first_text", "last"])
        if which == "last":  # sorts to the very end (record ts in year 9999)
            obj["ts"] = self.ch.pick([last_ms, "9999-12-31T23:59:59.999999999999Z"])
            self.emit(obj, None, topic=topic, kind="exact", record_ms=last_ms, copyable=False)
        else:
            obj["ts"] = first_ms if which == "first" else "0001-01-01T00:00:00Z"
            self.emit(obj, None, topic=topic, kind="exact", record_ms=first_ms, copyable=False)

    # ---- duplicates ------------------------------------------------------------------------
    def story_duplicate(self) -> None:
        # any earlier record with a string user and id, valid or not (a valid copy of a
        # rejected record is accepted: only accepted records reserve their id)
        candidates = self.with_ids
        if not candidates:
            return
        orig = self.ch.pick(candidates)
        if orig.copyable and self.ch.bool(0.4):  # the very same content
            self.emit(dict(orig.obj), orig.ts, topic=orig.topic)
            return
        t = (orig.ts or self.T) + self.ch.int(-3600, 3600) * SEC
        twist = self.ch.weighted([(80, "same"), (12, "other_user"), (8, "other_topic")])
        if twist == "other_user":  # the same id for another user: a new record
            copy = self.random_event(self.user(), t)
            copy["event_id"] = orig.obj[orig.id_field or ""]
            self.emit(copy, t)
            return
        if twist == "other_topic":  # ids are scoped to the topic too
            rid = orig.obj[orig.id_field or ""]
            if orig.topic == PRODUCT:
                self.emit(self.answer("ces", 4, orig.user, t, rid=rid), t, topic=SURVEY)
            else:
                copy = self.random_event(orig.user, t)
                copy["event_id"] = rid
                self.emit(copy, t)
            return
        if orig.topic == SURVEY:
            copy = self.answer(
                self.ch.pick(["csat", "nps"]),
                self.ch.int(1, 5),
                orig.user,
                t,
                self.ch.pick([None, "web"]),
                rid=orig.obj["response_id"],
            )
        else:
            copy = self.random_event(orig.user, t)
            copy["event_id"] = orig.obj["event_id"]
        self.emit(copy, t, topic=orig.topic)

    # ---- assembling ------------------------------------------------------------------------
    def record_ms_for(self, item: Item) -> int:
        if item.record_ms is not None:
            return item.record_ms
        assert item.ts is not None
        base = item.ts // MS  # floor, in ms
        late = self.lateness_ms
        if item.kind == "future":
            delay = -3_600_000 - self.ch.pick([1, 0, self.ch.int(1, 7_200_000)])
        elif item.kind == "too_late":
            delay = late + self.ch.pick([1, self.ch.int(1, 10**7)])
        else:
            delay = self.ch.weighted(
                [
                    (55, self.ch.int(0, 120_000)),
                    (15, self.ch.int(0, late)),
                    (10, -self.ch.int(0, 3_600_000)),
                    (5, late),
                    (5, -3_600_000),
                    (10, 0),
                ]
            )
        return base + delay

    def finish(self) -> list[bytes]:
        for item in self.items:
            item.record_ms = self.record_ms_for(item)
        order = sorted(self.items, key=lambda i: (i.record_ms, i.seq))
        self.enforce_identity_memory(order)
        return self.to_lines(order)

    def enforce_identity_memory(self, order: list[Item]) -> None:
        """A repeated id must arrive within the lateness of the identity's earliest ts."""
        earliest: dict[tuple[str, Any, Any], int] = {}
        for item in order:
            if item.id_field is None or not isinstance(item.obj, dict):
                continue
            ident = (item.topic, item.obj.get("user_id"), item.obj.get(item.id_field))
            if not isinstance(ident[1], str) or not isinstance(ident[2], str):
                continue
            assert item.record_ms is not None
            ts_ms = item.ts // MS if item.ts is not None else item.record_ms
            bound = self.lateness_ms + 3_600_000  # forgotten only when W > ts + lateness + 1h
            if ident in earliest and item.record_ms > earliest[ident] + bound:
                item.obj = {**item.obj, item.id_field: self.fresh("renamed")}
                ident = (item.topic, ident[1], item.obj[item.id_field])
            earliest[ident] = min(earliest.get(ident, ts_ms), ts_ms)

    def key_for(self, item: Item) -> Any:
        style = self.ch.weighted(
            [(80, "user"), (6, "null"), (6, "other"), (4, "absent"), (4, "random")]
        )
        if style == "user":
            return item.user if isinstance(item.user, str) else None
        if style == "null":
            return None
        if style == "other":
            return self.user()
        if style == "random":
            return "k-" + str(self.ch.int(0, 9))
        return ...  # absent

    def to_lines(self, order: list[Item]) -> list[bytes]:
        lines: list[bytes] = []
        offsets: dict[tuple[str, int], int] = {}
        # topic, partition, offset, record ms, payload
        delivered: list[tuple[str, int, int, int, str | None]] = []
        for item in order:
            assert item.record_ms is not None
            # extra lines first, so they never carry a newer record ts than the item
            while self.ch.bool(0.04):
                lines.append(self.noise_line(item.record_ms, offsets, delivered))
            if isinstance(item.obj, str) or item.obj is None:
                payload = item.obj
            else:
                payload = dumps(item.obj, ensure_ascii=self.ch.bool(0.2), compact=self.ch.bool(0.5))
            partition: int | None = None
            offset: int | None = None
            if self.ch.bool(0.85):
                user = item.user if isinstance(item.user, str) else ""
                partition = sum(map(ord, user)) % 3 if self.ch.bool(0.8) else self.ch.int(0, 2)
                offset = offsets.get((item.topic, partition), -1) + self.ch.pick([1, 1, 1, 2])
                offsets[(item.topic, partition)] = offset
                delivered.append((item.topic, partition, offset, item.record_ms, payload))
            lines.append(
                self.envelope(
                    item.topic, item.record_ms, self.key_for(item), payload, partition, offset
                )
            )
        return lines

    def envelope(
        self,
        topic: str,
        record_ms: int,
        key: Any,
        payload: str | None,
        partition: int | None,
        offset: int | None,
    ) -> bytes:
        env: dict[str, Any] = {"topic": topic}
        if partition is not None or self.ch.bool(0.05):
            env["partition"] = partition
        if offset is not None or self.ch.bool(0.05):
            env["offset"] = offset
        if self.ch.bool(0.3):
            env["tstype"] = "create"
        env["ts"] = record_ms
        if key is not ...:
            env["key"] = key
        env["payload"] = payload
        ascii_only = self.ch.bool(0.3) or (payload is not None and _has_surrogate(payload))
        return json.dumps(env, ensure_ascii=ascii_only).encode("utf-8")

    def noise_line(
        self,
        record_ms: int,
        offsets: dict[tuple[str, int], int],
        delivered: list[tuple[str, int, int, int, str | None]],
    ) -> bytes:
        what = self.ch.weighted(
            [
                (35, "redelivery"),
                (20, "other_topic"),
                (20, "bad_envelope"),
                (10, "blank"),
                (15, "redelivery_new"),
            ]
        )
        if what in ("redelivery", "redelivery_new") and delivered:
            topic, partition, offset, old_ms, payload = self.ch.pick(delivered)
            offset -= self.ch.pick([0, 0, 1])
            if what == "redelivery_new":  # new content under an old offset: still a redelivery
                payload = self.ch.pick([dumps(self.valid_obj(self.T - HOUR)[1]), "garbage", None])
            return self.envelope(topic, old_ms, None, payload, partition, offset)
        if what == "other_topic":
            topic = self.ch.pick(["dead-letters", "audit", "Product-Events", "product-events "])
            payload = self.ch.pick([dumps(self.valid_obj(self.T - HOUR)[1]), "junk", None])
            return self.envelope(topic, record_ms, None, payload, None, None)
        if what == "blank":
            return b""
        return self.ch.pick(
            [
                b"\xff\xfe not utf-8",
                b'{"topic": "product-events", "ts": 1, "payload": "{}"',
                b"[1, 2]",
                b"null",
                json.dumps({"topic": PRODUCT, "ts": str(record_ms), "payload": "{}"}).encode(),
                json.dumps({"topic": PRODUCT, "ts": record_ms + 0.5, "payload": "{}"}).encode(),
                json.dumps({"topic": PRODUCT, "ts": record_ms, "payload": {"a": 1}}).encode(),
                json.dumps({"topic": PRODUCT, "ts": record_ms}).encode(),
                json.dumps({"ts": record_ms, "payload": "{}"}).encode(),
                json.dumps({"topic": PRODUCT, "ts": record_ms, "payload": "{}", "key": 7}).encode(),
                json.dumps(
                    {
                        "topic": PRODUCT,
                        "ts": record_ms,
                        "payload": "{}",
                        "partition": "0",
                        "offset": 1,
                    }
                ).encode(),
                b'{"topic": "product-events", "ts": NaN, "payload": "{}"}',
                b'{"topic": "product-events", "ts": 1, "payload": "{}", "partition": true}',
                b'{"topic": "product-events", "ts": 1, "payload": "{}", "offset": 1.5}',
                b'{"topic": "product-events", "ts": 1, "payload": "{}"} {}',
                b'\xef\xbb\xbf{"topic": "product-events", "ts": 1, "payload": "{}"}',
                '{"topic": "product-events", "ts": 1, "payload": "\udcff"}'.encode(
                    "utf-8", "surrogatepass"
                ),
            ]
        )


def _as_of_text(b: Builder) -> str:
    if b.T % MS == 0 and b.ch.bool(0.15):
        return str(b.T // MS)
    return b.rfc3339(b.T)


def build(ch: Chooser, stories: int) -> Scenario:
    """Build one scenario with `stories` stories (each a few records)."""
    b = Builder(ch)
    tz_name = ch.pick(TIMEZONES)
    b.tz = ZoneInfo(tz_name)
    config: dict[str, Any] = {}
    if tz_name != "UTC" or ch.bool(0.2):
        config["timezone"] = tz_name
    lateness = ch.weighted([(60, 48), (15, 24), (15, 6), (10, 72)])
    if lateness != 48 or ch.bool(0.2):
        config["allowed_lateness_hours"] = lateness
    b.lateness_ms = lateness * 3_600_000
    if ch.bool(0.3):
        config["inactive_events"] = ch.pick(
            [[], ["impression", "click"], ["page_view"], ["impression"], ["impression", "signup"]]
        )
    if ch.bool(0.2):
        config["activation_events"] = ch.pick(
            [["key_action"], ["profile_completed"], ["profile_completed", "key_action", "signup"]]
        )
    if ch.bool(0.2):
        config["value_event"] = ch.pick(["feature_used", "purchase", "key_action"])
    if ch.bool(0.2):
        config["funnel_steps"] = ch.pick(
            [["welcome", "tour"], ["tour", "welcome", "done"], ["welcome"]]
        )
    b.config = config

    d = ch.pick(AS_OF_DATES)
    midnight = int(datetime(d.year, d.month, d.day, tzinfo=b.tz).timestamp()) * PS
    b.T = midnight
    time_of_day = ch.weighted([(60, "random"), (15, "midnight"), (15, "late"), (10, "early")])
    if time_of_day == "random":
        b.T += ch.int(0, 86399) * SEC + ch.pick([0, ch.int(0, 999) * MS, ch.int(0, PS - 1)])
    elif time_of_day == "late":
        b.T += DAY - ch.int(1, 3600) * SEC
    elif time_of_day == "early":
        b.T += ch.int(1, 3600) * SEC + ch.pick([0, 1000, 1])
    as_of = _as_of_text(b)

    n_users = ch.int(2, 8)
    b.users = [f"u{i}" for i in range(1, n_users + 1)]
    if ch.bool(0.2):
        b.users.append("ü" * 127 + "!")  # 128 code points
    for u in b.users:
        b.home_account[u] = ch.pick([None, None, *ACCOUNTS])

    kinds: list[tuple[int, Callable[[], None]]] = [
        (14, b.story_signup),
        (14, b.story_activity),
        (12, b.story_session),
        (6, b.story_ticket),
        (8, b.story_order),
        (6, b.story_subscription),
        (10, b.story_survey),
        (4, b.story_dormant),
        (14, b.story_invalid),
        (8, b.story_duplicate),
    ]
    for _ in range(stories):
        ch.weighted(kinds)()
    return Scenario(b.finish(), config, as_of)


@st.composite
def scenarios(draw: Callable[[st.SearchStrategy[Any]], Any], max_stories: int = 40) -> Scenario:
    """A Hypothesis strategy of replay scenarios (lines, config, as_of)."""
    ch = DrawChooser(draw)
    return build(ch, ch.int(0, max_stories))


def generate(seed: int, stories: int = 200) -> Scenario:
    """A plain seeded scenario (about 4-5 lines per story)."""
    return build(RandomChooser(random.Random(seed)), stories)
