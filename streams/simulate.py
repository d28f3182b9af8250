"""A seeded generator of a realistic record stream (pure: no I/O, no clock, no Kafka client).

It yields replay envelopes, the shape `kcat -C -J` prints (docs/metrics.md, "Replay envelope"):

    {"topic": "product-events", "partition": 3, "offset": 17, "ts": 1795169100500,
     "key": "u-42", "payload": "{\\"event_id\\":\\"e-1f\\", ...}"}

`ts` is the record timestamp (epoch ms); records come out with a non-decreasing `ts`, evenly
spaced at `rate` records per second of record time. Each record's `payload` is the value as a
string; its bytes are `value_bytes(payload)` (a payload may hold a lone surrogate: a value that
is not UTF-8, on purpose).

What the stream contains (docs/metrics.md lists every type): users sign up over the simulated
period (some existed before it and never do), walk the onboarding funnel (skipping steps now and
then), complete their profile and reach their first `key_action`; they open sessions with page
views, impressions, clicks, `feature_used` and social interactions; they buy (and sometimes
return), open support tickets (most resolved later), answer CSAT/NPS/CES surveys with or without
a touchpoint, and customers (an account, or a user without one) start and cancel subscriptions.
Some users go dormant for good. An event's `ts` is its record's `ts` minus a small jitter,
occasionally minutes or hours (within the allowed lateness) late, and is written in one of the
accepted forms (RFC 3339 with `Z`, with an offset, with more digits, or epoch milliseconds).

A fraction `bad_fraction` of the records is bad on purpose: one of each reject reason
(`too_large`, `bad_json`, `schema`, `future`, `too_late`) and duplicates of records already
written; a smaller fraction (`misrouted_fraction`) of valid product events carries a key other
than their `user_id` (null, the account, another user). `Simulator.counts` tells how many of each
were written.

Partitions follow Kafka's default partitioner (`kafka_partition`: murmur2 of the key bytes),
so a file written here and the live producer put every user in the same partition. A record with a
null key goes to a seeded random partition (the producer's sticky partitioner is not
reproducible anyway).
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from streams.partitioner import kafka_partition, murmur2  # noqa: F401 - re-exported

PRODUCT_TOPIC = "product-events"
SURVEY_TOPIC = "survey-answers"

MAX_VALUE_BYTES = 65_536
REJECT_REASONS = ("too_large", "bad_json", "schema", "future", "too_late")

ONBOARDING_STEPS = ("welcome", "profile", "invite", "tour", "done")
FEATURES = (
    "search",
    "dashboards",
    "reports",
    "export_csv",
    "integrations",
    "api_keys",
    "notifications",
    "sharing",
    "comments",
    "calendar",
    "mobile_sync",
    "dark_mode",
)
PLACEMENTS = (
    "home_banner",
    "search_results",
    "recommendations",
    "sidebar",
    "email_footer",
    "checkout_upsell",
)
PATHS = (
    "/home",
    "/dashboard",
    "/search",
    "/reports",
    "/settings",
    "/pricing",
    "/docs",
    "/inbox",
    "/profile",
    "/billing",
)
TICKET_CATEGORIES = ("billing", "bug", "account", "how_to", "feature_request", "outage")
SOCIAL_ACTIONS = ("like", "share", "comment", "mention", "save")
TOUCHPOINTS = ("support", "checkout", "onboarding", "email")
CUSTOM_TYPES = ("file_uploaded", "notification_opened", "report_exported", "invite_sent")
# Already JSON-encoded (ASCII-escaped where needed), so payloads are built with f-strings.
COMMENTS = (
    '"fast!"',
    '"Great support, thanks"',
    '"too slow"',
    '"Merci, tr\\u00e8s bien"',
    '"could be better"',
    '"loved the onboarding \\ud83d\\ude80"',
    '"the export keeps failing"',
    '""',
    '"\\u4fbf\\u5229"',
    '"meh"',
)

_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
_MIN_MS = 60_000


def value_bytes(payload: str) -> bytes:
    """The record value a payload stands for. A lone surrogate becomes the bytes a lenient
    encoder would write (not UTF-8), which the pipeline rejects as `bad_json`."""
    return payload.encode("utf-8", "surrogatepass")


_encode = msgspec.json.encode


def envelope_line(envelope: dict[str, Any]) -> bytes:
    """One JSON Lines line (with its newline) for an envelope. A payload holding a lone
    surrogate is written as a `\\udxxx` escape, so the file itself stays valid UTF-8."""
    try:
        return _encode(envelope) + b"\n"
    except UnicodeEncodeError:
        return json.dumps(envelope, separators=(",", ":")).encode("ascii") + b"\n"


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. Times are epoch milliseconds (record time)."""

    start_ms: int
    duration_s: float
    users: int = 1_000
    accounts: int | None = None  # None: users // 5
    rate: float = 10.0  # records per second of record time
    seed: int = 0
    partitions: int = 1
    bad_fraction: float = 0.01  # rejected records + duplicates, of all records
    misrouted_fraction: float | None = None  # valid events keyed wrongly; None: bad_fraction / 5
    allowed_lateness_hours: float = 48.0  # late events stay within 75% of it (>= 1)
    max_records: int | None = None

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ValueError("users must be >= 1")
        if self.accounts is not None and self.accounts < 0:
            raise ValueError("accounts must be >= 0")
        if not self.rate > 0 or math.isinf(self.rate):
            raise ValueError("rate must be a positive number")
        if not self.duration_s >= 0 or math.isinf(self.duration_s):
            raise ValueError("duration must be >= 0")
        if self.partitions < 1:
            raise ValueError("partitions must be >= 1")
        if not 0 <= self.bad_fraction <= 1:
            raise ValueError("bad_fraction must be in [0, 1]")
        if self.misrouted_fraction is not None and not 0 <= self.misrouted_fraction <= 1:
            raise ValueError("misrouted_fraction must be in [0, 1]")
        if not self.allowed_lateness_hours >= 1:
            raise ValueError("allowed_lateness_hours must be >= 1 (late events need room)")
        if self.max_records is not None and self.max_records < 0:
            raise ValueError("max_records must be >= 0")

    @property
    def record_count(self) -> int:
        """How many records the stream holds."""
        n = int(self.duration_s * self.rate)
        return n if self.max_records is None else min(n, self.max_records)

    @property
    def end_ms(self) -> int:
        return self.start_ms + int(self.duration_s * 1000)


# Heap entry kinds (scheduled follow-ups).
(
    _K_SIGNUP,
    _K_ONBOARD,
    _K_MILESTONE,
    _K_SESSION,
    _K_RETURN,
    _K_RESOLVE,
    _K_SURVEY,
    _K_SUBSCRIPTION,
) = range(8)

# Spontaneous actions of an active user: cumulative thresholds on one random draw (the rest:
# a session).
_SPONTANEOUS = (
    (0.40, "session"),
    (0.52, "feature_used"),
    (0.58, "custom"),
    (0.63, "key_action"),
    (0.69, "social"),
    (0.74, "impression"),
    (0.77, "purchase"),
    (0.785, "ticket"),
    (0.84, "survey"),
)

_BAD_KINDS = (
    (1, "too_large"),
    (3, "bad_json"),
    (4, "schema"),
    (2, "future"),
    (2, "too_late"),
    (3, "duplicate"),
)


class Simulator:
    """One simulated stream: iterate (once) to get the envelopes in record-time order.

    `counts` tells what was written so far: `records`, per topic, each reject reason,
    `duplicate` and `misrouted`.
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        c = config
        rng = random.Random(c.seed)
        self._rng = rng
        self._bad_counts: dict[str, int] = dict.fromkeys(
            (*REJECT_REASONS, "duplicate", "misrouted"), 0
        )
        n = c.users
        n_acc = c.users // 5 if c.accounts is None else c.accounts
        self.user_ids = [f"u-{i}" for i in range(n)]
        self.account_of: list[str | None] = [None] * n
        # ~85% of users belong to an account: every account gets two, the rest go to accounts
        # with a long-tailed size (a few big customers, many small ones).
        if n_acc:
            members = [u for u in range(n) if rng.random() < 0.85]
            rng.shuffle(members)
            acc_ids = [f"acct-{j}" for j in range(n_acc)]
            base = min(len(members), 2 * n_acc)
            for i, u in enumerate(members[:base]):
                self.account_of[u] = acc_ids[i % n_acc]
            rest = members[base:]
            if rest:
                weights = [1.0 / (j + 1) ** 0.8 for j in range(n_acc)]
                for u, a in zip(rest, rng.choices(acc_ids, weights, k=len(rest)), strict=True):
                    self.account_of[u] = a
        self._part = [kafka_partition(k.encode(), c.partitions) for k in self.user_ids]
        self._user_json = [
            f',"user_id":"{uid}"' + (f',"account_id":"{a}"' if a else "")
            for uid, a in zip(self.user_ids, self.account_of, strict=True)
        ]
        self._offsets = {PRODUCT_TOPIC: [0] * c.partitions, SURVEY_TOPIC: [0] * c.partitions}
        self._iso_cache: dict[int, str] = {}
        # Hours-late events: between lo and 75% of the allowed lateness.
        self._late_lo = min(_HOUR_MS, int(c.allowed_lateness_hours * 0.5 * _HOUR_MS))
        self._late_span = int(c.allowed_lateness_hours * 0.75 * _HOUR_MS) - self._late_lo
        self._lateness_ms = int(c.allowed_lateness_hours * _HOUR_MS)
        self._seq = itertools.count(1).__next__  # heap tie-breakers (determinism)
        self._eid = 0
        self._rid = 0
        self._oid = 0
        self._tid = 0
        self._sid = 0
        self._ring: list[tuple[str, int, str, int]] = []  # recent valid records, for duplicates
        self._ring_at = 0
        self._heap: list[tuple[int, int, int, int, Any]] = []  # follow-ups: (due, seq, kind, ...)

        # Who exists: ~30% of users predate the stream (no signup in it; user 0 always, and never
        # dormant); the others sign up at a uniform instant of the period. What is known at the
        # start goes to a sorted calendar, merged with the heap of follow-ups as time passes.
        # Engagement: on each (UTC) day a user is active with a probability of their own (lower
        # at weekends), so DAU/MAU, retention and health look real whatever the rate; the rate
        # only decides how busy an active day is (and how heavy a user is: their weight).
        self._weight = [1 + min(7, int(rng.expovariate(1 / 1.5))) for _ in range(n)]
        self._p_day = [_daily_probability(rng.random(), rng.random()) for _ in range(n)]
        self._p_day[0] = 1.0
        self._dormant_at = [math.inf] * n
        self._alive: list[int] = []  # signed up (or there before), not yet seen dormant
        self._pool: list[int] = []  # today's active users, each repeated by its weight
        self._next_day = c.start_ms - c.start_ms % _DAY_MS + _DAY_MS
        calendar: list[tuple[int, int, int, int, Any]] = []
        start, end = c.start_ms, c.end_ms
        span = max(1, end - start)
        for u in range(n):
            if u == 0 or rng.random() < 0.3:
                self._activate(u, start, u != 0 and rng.random() < 0.3)
            else:
                calendar.append((start + int(rng.random() * span), self._seq(), 0, u, None))
        # Subscriptions, per customer (an account, or a user without one), emitted by one of its
        # users: about half subscribe, early in the period more often.
        first_member: dict[str, int] = {}
        for u, uid in enumerate(self.user_ids):
            first_member.setdefault(self.account_of[u] or uid, u)
        for u in first_member.values():
            if rng.random() < 0.5:
                due = start + int(rng.random() ** 2 * span)
                calendar.append((due, self._seq(), _K_SUBSCRIPTION, u, "start"))
        calendar.sort()
        self._calendar = calendar

    @property
    def counts(self) -> dict[str, int]:
        product = sum(self._offsets[PRODUCT_TOPIC])
        survey = sum(self._offsets[SURVEY_TOPIC])
        return {
            "records": product + survey,
            PRODUCT_TOPIC: product,
            SURVEY_TOPIC: survey,
            **self._bad_counts,
        }

    @property
    def accounts(self) -> list[str]:
        return sorted({a for a in self.account_of if a is not None})

    # -- helpers ---------------------------------------------------------------------------

    def _push(self, due: int, kind: int, u: int, arg: Any) -> None:
        if due < self.config.end_ms:
            heapq.heappush(self._heap, (due, self._seq(), kind, u, arg))

    def _activate(self, u: int, now: int, goes_dormant: bool) -> None:
        self._alive.append(u)
        self._pool.extend([u] * self._weight[u])  # active on the day they arrive
        if goes_dormant:
            self._dormant_at[u] = now + _HOUR_MS + int(self._rng.expovariate(1 / 7) * _DAY_MS)

    def _second(self, s: int) -> str:
        cache = self._iso_cache
        if len(cache) > 200_000:
            cache.clear()
        p = cache[s] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
        return p

    def _stamp(self, rts: int) -> str:
        """The JSON `ts` of an event written by a record at `rts`: a little earlier (rarely
        minutes, very rarely hours), mostly RFC 3339 with milliseconds and `Z`."""
        r = self._rng.random()
        if r < 0.985:
            ets = rts - int(r * 1522)
        elif r < 0.998:
            ets = rts - _MIN_MS - int((r - 0.985) * 133_846_153)  # 1-30 minutes
        else:
            ets = rts - self._late_lo - int((r - 0.998) * 500 * self._late_span)
        f = (r * 8192.0) % 1.0  # a second, practically independent, uniform draw
        if f < 0.88:
            s, ms = divmod(ets, 1000)
            p = self._iso_cache.get(s) or self._second(s)
            return f'"{p}.{ms:03d}Z"'
        return self._rare_ts(ets, f)

    def _rare_ts(self, ets: int, f: float) -> str:
        """The other accepted forms: epoch ms, an offset, microseconds, lower-case t/z."""
        if f < 0.96:
            return str(ets)
        s, ms = divmod(ets, 1000)
        if f < 0.99:
            off = (120, -300, 330, 0, -600)[int((f - 0.96) * 166.6)]
            sign = "-" if off < 0 else "+"
            local = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s + off * 60))
            return f'"{local}.{ms:03d}{sign}{abs(off) // 60:02d}:{abs(off) % 60:02d}"'
        p = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
        if f < 0.997:
            return f'"{p}.{ms:03d}{int(f * 1e9) % 1000:03d}Z"'
        return f'"{p.replace("T", "t")}.{ms:03d}z"'

    def _exact_ts(self, ets: int) -> str:
        s, ms = divmod(ets, 1000)
        return f'"{self._iso_cache.get(s) or self._second(s)}.{ms:03d}Z"'

    def _product(self, u: int, typ: str, rts: int, sid: str | None, props: str | None) -> str:
        """A product event of user `u` written at record time `rts` (`_stamp` inlined: this is
        the hot path)."""
        r = self._rng.random()
        if r < 0.985:
            ets = rts - int(r * 1522)
        elif r < 0.998:
            ets = rts - _MIN_MS - int((r - 0.985) * 133_846_153)
        else:
            ets = rts - self._late_lo - int((r - 0.998) * 500 * self._late_span)
        f = (r * 8192.0) % 1.0
        eid = self._eid = self._eid + 1
        if f < 0.88:
            s, ms = divmod(ets, 1000)
            iso = self._iso_cache.get(s) or self._second(s)
            p = f'{{"event_id":"e-{eid:x}","type":"{typ}"{self._user_json[u]},"ts":"{iso}.{ms:03d}Z"'
        else:
            ts = self._rare_ts(ets, f)
            p = f'{{"event_id":"e-{eid:x}","type":"{typ}"{self._user_json[u]},"ts":{ts}'
        if sid is not None:
            p += f',"session_id":"{sid}"'
        if props is not None:
            p += f',"props":{props}'
        return p + "}"

    def _product_at(self, u: int, typ: str, ts: str, sid: str | None, props: str | None) -> str:
        """A product event with the given JSON `ts`."""
        self._eid += 1
        p = f'{{"event_id":"e-{self._eid:x}","type":"{typ}"{self._user_json[u]},"ts":{ts}'
        if sid is not None:
            p += f',"session_id":"{sid}"'
        if props is not None:
            p += f',"props":{props}'
        return p + "}"

    def _survey(
        self, u: int, survey: str, score: int | str, ts: str, touchpoint: str | None
    ) -> str:
        self._rid += 1
        p = (
            f'{{"response_id":"r-{self._rid:x}","survey":"{survey}","score":{score}'
            f'{self._user_json[u]},"ts":{ts}'
        )
        if touchpoint is not None:
            p += f',"touchpoint":"{touchpoint}"'
        rng = self._rng
        if rng.random() < 0.25:
            p += f',"comment":{COMMENTS[int(rng.random() * len(COMMENTS))]}'
        return p + "}"

    def _score(self, survey: str) -> int:
        r = self._rng.random()
        if survey == "nps":  # ~50% promoters, ~30% passives, ~20% detractors
            if r < 0.5:
                return 9 + int(r * 4) % 2
            if r < 0.8:
                return 7 + int(r * 20) % 2
            return int((r - 0.8) * 35)  # 0..6
        if survey == "csat":
            return 5 if r < 0.4 else 4 if r < 0.7 else 3 if r < 0.82 else 2 if r < 0.92 else 1
        return 1 + min(6, int(r * r * 7))  # ces: mostly low effort

    def _pick_user(self, now: int) -> int:
        pool = self._pool
        rng = self._rng
        dormant = self._dormant_at
        while pool:
            i = int(rng.random() * len(pool))
            u = pool[i]
            if dormant[u] > now:
                return u
            pool[i] = pool[-1]  # gone dormant: out of the pool for good
            pool.pop()
        return 0  # user 0 is there from the start and never dormant

    def _new_day(self, rts: int) -> None:
        day = rts // _DAY_MS
        factor = 0.55 if (day + 3) % 7 >= 5 else 1.0  # 1970-01-01 was a Thursday
        dormant = self._dormant_at
        self._alive = alive = [u for u in self._alive if dormant[u] > rts]
        random_ = self._rng.random
        p_day = self._p_day
        weight = self._weight
        pool: list[int] = []
        for u in alive:
            if random_() < p_day[u] * factor:
                pool.extend([u] * weight[u])
        self._pool = pool
        self._next_day = (day + 1) * _DAY_MS

    # -- scheduled follow-ups --------------------------------------------------------------

    def _on_signup(self, rts: int, u: int, arg: Any) -> tuple[str, int, str]:
        rng = self._rng
        payload = self._product(u, "signup", rts, None, None)
        if arg is None:  # the real one (arg "again": a repeated signup, still activity)
            self._activate(u, rts, rng.random() < 0.25)
            self._push(rts + 10_000 + int(rng.random() * 170_000), _K_ONBOARD, u, 0)
            if rng.random() < 0.7:
                due = rts + int(rng.lognormvariate(math.log(6 * _HOUR_MS), 1.5))
                self._push(due, _K_MILESTONE, u, "profile_completed")
            if rng.random() < 0.75:  # the first key_action: time to first value
                due = rts + int(rng.lognormvariate(math.log(5 * _HOUR_MS), 1.6))
                self._push(due, _K_MILESTONE, u, "key_action")
            if rng.random() < 0.01:
                self._push(rts + int(rng.random() * 2 * _DAY_MS), _K_SIGNUP, u, "again")
        return PRODUCT_TOPIC, u, payload

    def _on_onboard(self, rts: int, u: int, step: Any) -> tuple[str, int, str]:
        rng = self._rng
        props = f'{{"step":"{ONBOARDING_STEPS[step]}"}}'
        payload = self._product(u, "onboarding_step", rts, None, props)
        last = len(ONBOARDING_STEPS) - 1
        if step < last and rng.random() < 0.85:
            nxt = step + 1
            if ONBOARDING_STEPS[nxt] == "invite" and rng.random() < 0.35:
                nxt += 1  # many skip the invite step
            elif nxt < last and rng.random() < 0.05:
                nxt += 1
            self._push(rts + 20_000 + int(rng.random() * 600_000), _K_ONBOARD, u, nxt)
        elif step == last and rng.random() < 0.3:
            self._push(rts + int(rng.random() * _HOUR_MS), _K_SURVEY, u, ("csat", "onboarding"))
        return PRODUCT_TOPIC, u, payload

    def _on_milestone(self, rts: int, u: int, typ: Any) -> tuple[str, int, str]:
        return PRODUCT_TOPIC, u, self._product(u, typ, rts, None, None)

    def _on_session(self, rts: int, u: int, state: Any) -> tuple[str, int, str]:
        # state: [session_id, plan, index]; plan items: (gap_ms, type, props | None)
        sid, plan, idx = state
        _, typ, props = plan[idx]
        payload = self._product(u, typ, rts, sid, props)
        idx += 1
        if idx < len(plan):
            state[2] = idx
            heapq.heappush(self._heap, (rts + plan[idx][0], self._seq(), _K_SESSION, u, state))
        return PRODUCT_TOPIC, u, payload

    def _on_return(self, rts: int, u: int, order_id: Any) -> tuple[str, int, str]:
        props = f'{{"order_id":"{order_id}","reason":"damaged"}}'
        return PRODUCT_TOPIC, u, self._product(u, "return", rts, None, props)

    def _on_resolve(self, rts: int, u: int, ticket_id: Any) -> tuple[str, int, str]:
        props = f'{{"ticket_id":"{ticket_id}"}}'
        payload = self._product(u, "ticket_resolved", rts, None, props)
        if self._rng.random() < 0.35:
            due = rts + 600_000 + int(self._rng.random() * 2 * _HOUR_MS)
            self._push(due, _K_SURVEY, u, ("csat", "support"))
        return PRODUCT_TOPIC, u, payload

    def _on_survey(self, rts: int, u: int, arg: Any) -> tuple[str, int, str]:
        survey, touchpoint = arg
        payload = self._survey(u, survey, self._score(survey), self._stamp(rts), touchpoint)
        return SURVEY_TOPIC, u, payload

    def _on_subscription(self, rts: int, u: int, what: Any) -> tuple[str, int, str]:
        rng = self._rng
        if what == "cancel":
            if rng.random() < 0.2:  # win-back
                self._push(
                    rts + 3 * _DAY_MS + int(rng.random() * 27 * _DAY_MS),
                    _K_SUBSCRIPTION,
                    u,
                    "start",
                )
            return PRODUCT_TOPIC, u, self._product(u, "subscription_cancelled", rts, None, None)
        if what == "start":
            x = rng.random()
            if x < 0.3:
                due = rts + _DAY_MS + int(rng.random() * 59 * _DAY_MS)
                self._push(due, _K_SUBSCRIPTION, u, "cancel")
            elif x < 0.35:  # a start sent again while subscribed (a client retry, a renewal)
                due = rts + _HOUR_MS + int(rng.random() * 30 * _DAY_MS)
                self._push(due, _K_SUBSCRIPTION, u, "again")
        return PRODUCT_TOPIC, u, self._product(u, "subscription_started", rts, None, None)

    # -- spontaneous actions ---------------------------------------------------------------

    def _session_plan(self) -> list[tuple[int, str, str | None]]:
        rng = self._rng
        r = rng.random()
        pages = 1 if r < 0.3 else 2 + int(rng.expovariate(1 / 4))
        plan: list[tuple[int, str, str | None]] = [(0, "session_start", None)]
        for _ in range(pages):
            path = PATHS[int(rng.random() * len(PATHS))]
            plan.append((2_000 + int(rng.random() * 90_000), "page_view", f'{{"path":"{path}"}}'))
            x = rng.random()
            if x < 0.35:
                placement = PLACEMENTS[int(rng.random() * len(PLACEMENTS))]
                props = f'{{"placement":"{placement}"}}' if x < 0.32 else None
                plan.append((300 + int(rng.random() * 3_000), "impression", props))
                if rng.random() < 0.12:
                    plan.append((1_000 + int(rng.random() * 20_000), "click", props))
            elif x < 0.5:
                feature = FEATURES[min(11, int(rng.expovariate(0.35)))]
                props = f'{{"feature":"{feature}"}}'
                plan.append((1_000 + int(rng.random() * 30_000), "feature_used", props))
            elif x < 0.54:
                props = f'{{"action":"{SOCIAL_ACTIONS[int(rng.random() * 5)]}"}}'
                plan.append((1_000 + int(rng.random() * 10_000), "social_interaction", props))
        if r < 0.3 or rng.random() < 0.96:  # a bounce always ends; a few sessions never do
            plan.append((1_000 + int(rng.random() * 60_000), "session_end", None))
        return plan

    def _spontaneous(self, rts: int) -> tuple[str, int, str]:
        rng = self._rng
        if rts >= self._next_day:
            self._new_day(rts)
        u = self._pick_user(rts)
        r = rng.random()
        action = "session"
        for threshold, name in _SPONTANEOUS:
            if r < threshold:
                action = name
                break
        if action == "session":
            self._sid += 1
            sid = f"s-{self._sid:x}"
            plan = self._session_plan()
            entry = (rts + plan[1][0], self._seq(), _K_SESSION, u, [sid, plan, 1])
            heapq.heappush(self._heap, entry)
            return PRODUCT_TOPIC, u, self._product(u, "session_start", rts, sid, None)
        if action == "feature_used":
            props = f'{{"feature":"{FEATURES[min(11, int(rng.expovariate(0.35)))]}"}}'
            return PRODUCT_TOPIC, u, self._product(u, "feature_used", rts, None, props)
        if action == "custom":
            typ = CUSTOM_TYPES[int(rng.random() * len(CUSTOM_TYPES))]
            return PRODUCT_TOPIC, u, self._product(u, typ, rts, None, None)
        if action == "key_action":
            return PRODUCT_TOPIC, u, self._product(u, "key_action", rts, None, None)
        if action == "social":
            name = SOCIAL_ACTIONS[min(4, int(rng.expovariate(0.8)))]
            props = f'{{"action":"{name}","target":"post-{int(rng.random() * 5000)}"}}'
            return PRODUCT_TOPIC, u, self._product(u, "social_interaction", rts, None, props)
        if action == "impression":  # outside sessions: emails, notifications
            props = f'{{"placement":"{PLACEMENTS[int(rng.random() * len(PLACEMENTS))]}"}}'
            typ = "click" if rng.random() < 0.1 else "impression"
            return PRODUCT_TOPIC, u, self._product(u, typ, rts, None, props)
        if action == "purchase":
            self._oid += 1
            order_id = f"o-{self._oid:x}"
            x = rng.random()
            amount = f"{rng.lognormvariate(3.5, 0.9):.2f}" if x < 0.9 else str(int(x * 1000) % 300)
            if rng.random() < 0.07:
                due = rts + _DAY_MS + int(rng.random() * 19 * _DAY_MS)
                self._push(due, _K_RETURN, u, order_id)
            if rng.random() < 0.15:
                due = rts + 300_000 + int(rng.random() * _HOUR_MS)
                self._push(due, _K_SURVEY, u, ("csat" if x < 0.5 else "ces", "checkout"))
            props = f'{{"order_id":"{order_id}","amount":{amount},"currency":"EUR"}}'
            return PRODUCT_TOPIC, u, self._product(u, "purchase", rts, None, props)
        if action == "ticket":
            self._tid += 1
            ticket_id = f"t-{self._tid:x}"
            category = TICKET_CATEGORIES[int(rng.random() * len(TICKET_CATEGORIES))]
            if rng.random() < 0.95:  # the rest stay open
                due = rts + int(rng.lognormvariate(math.log(4 * _HOUR_MS), 1.2))
                self._push(due, _K_RESOLVE, u, ticket_id)
            props = f'{{"ticket_id":"{ticket_id}","category":"{category}"}}'
            return PRODUCT_TOPIC, u, self._product(u, "ticket_opened", rts, None, props)
        # survey: NPS by email or in-app (no touchpoint); CSAT/CES at a touchpoint or none
        touchpoint: str | None
        x = rng.random()
        if x < 0.4:
            survey, touchpoint = "nps", ("email" if x < 0.25 else None)
        elif x < 0.75:
            survey = "csat"
            touchpoint = TOUCHPOINTS[int(rng.random() * 4)] if x < 0.65 else None
        else:
            survey = "ces"
            touchpoint = TOUCHPOINTS[int(rng.random() * 4)] if x < 0.9 else None
        payload = self._survey(u, survey, self._score(survey), self._stamp(rts), touchpoint)
        return SURVEY_TOPIC, u, payload

    # -- bad records -----------------------------------------------------------------------

    def _bad(self, rts: int) -> tuple[str, int, str, str]:
        """A bad record: (kind, user, topic, payload)."""
        rng = self._rng
        x = rng.random() * sum(w for w, _ in _BAD_KINDS)
        kind = "duplicate"
        for w, name in _BAD_KINDS:
            if x < w:
                kind = name
                break
            x -= w
        if kind == "duplicate":
            ring = self._ring
            if ring:
                topic, u, payload, first_rts = ring[int(rng.random() * len(ring))]
                if rts - first_rts >= self._lateness_ms // 5:  # at a low rate: the newest one
                    topic, u, payload, first_rts = ring[self._ring_at - 1]
                # Young enough that the copy is not too_late (late events stay within 75%).
                if rts - first_rts < self._lateness_ms // 5:
                    return kind, u, topic, payload
            kind = "schema"
        u = int(rng.random() * self.config.users)
        survey = rng.random() < 0.2
        topic = SURVEY_TOPIC if survey else PRODUCT_TOPIC
        if kind == "too_large":
            blob = "x" * (MAX_VALUE_BYTES + int(rng.random() * 4096))
            props = f'{{"path":"/upload","blob":"{blob}"}}'
            return kind, u, PRODUCT_TOPIC, self._product(u, "page_view", rts, "s-0", props)
        if kind in ("future", "too_late"):
            if kind == "future":
                ets = rts + _HOUR_MS + 1 + int(rng.random() * 3 * _DAY_MS)
            else:
                ets = rts - self._lateness_ms - 1 - int(rng.random() * 10 * _DAY_MS)
            ts = self._exact_ts(ets) if rng.random() < 0.8 else str(ets)
            if survey:
                return kind, u, topic, self._survey(u, "csat", self._score("csat"), ts, "email")
            return kind, u, topic, self._product_at(u, "key_action", ts, None, None)
        ts = self._stamp(rts)
        if kind == "bad_json":
            good = (
                self._survey(u, "nps", self._score("nps"), ts, None)
                if survey
                else self._product_at(u, "page_view", ts, "s-0", '{"path":"/home"}')
            )
            return kind, u, topic, _spoil_json(good, int(rng.random() * 8), rng.random())
        # schema
        y = int(rng.random() * 12)
        if survey:
            if y < 10:
                bad_score = ("11", '"9"', "9.0", "-1", "null")[y % 5]
                return kind, u, topic, self._survey(u, "nps", bad_score, ts, None)
            return kind, u, topic, self._survey(u, "happiness", 3, ts, None)
        if y == 5:
            bad_ts = (
                '"2026-11-20 10:00:00Z"',  # a space separator
                '"2026-11-20T10:00:00"',  # no offset
                "1795169100.5",  # a float
                '"1795169100500"',  # a numeric string
                '"2026-11-20T10:00:60Z"',  # second 60
                '"2026-02-30T10:00:00Z"',  # no such day
            )[int(rng.random() * 6)]
            return kind, u, topic, self._product_at(u, "key_action", bad_ts, None, None)
        if y == 6:
            return kind, u, topic, '["not", "an", "object"]'
        if y == 7:  # no user_id
            self._eid += 1
            return kind, u, topic, f'{{"event_id":"e-{self._eid:x}","type":"key_action","ts":{ts}}}'
        bad_product: tuple[tuple[str, str | None, str | None], ...] = (
            ("page_view", None, '{"path":"/"}'),  # no session_id
            ("Page View", "s-0", None),  # not the type pattern
            ("purchase", None, '{"order_id":"o-0","amount":-5}'),
            ("social_interaction", None, '{"action":"poke"}'),
            ("onboarding_step", None, "{}"),  # no props.step
            ("", None, None),
            ("", None, None),
            ("", None, None),
            ("feature_used", None, '{"feature":""}'),  # an empty name
            ("key_action", None, '"oops"'),  # props not an object
            ("ticket_opened", None, '{"ticket_id":"t-0"}'),  # no category
            ("click", None, '{"placement":42}'),
        )
        typ, sid, bad_props = bad_product[y]
        return kind, u, topic, self._product_at(u, typ, ts, sid, bad_props)

    def _misroute(self, u: int) -> tuple[str | None, int]:
        """A key other than the user's (a careless producer), and the partition it lands in."""
        rng = self._rng
        n = self.config.partitions
        x = rng.random()
        if x < 0.4:
            return None, int(rng.random() * n)
        account = self.account_of[u]
        if x < 0.7 and account is not None:
            key = account
        elif x < 0.9:
            key = self.user_ids[int(rng.random() * self.config.users)]
        else:
            key = self.user_ids[u].upper()
        return key, kafka_partition(key.encode(), n)

    # -- the stream ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        c = self.config
        rng_random = self._rng.random
        heap = self._heap
        heappop = heapq.heappop
        heappush = heapq.heappush
        product = self._product
        seq = self._seq
        calendar = self._calendar
        cal_i = 0
        cal_due = calendar[0][0] if calendar else math.inf
        handlers = (
            self._on_signup,
            self._on_onboard,
            self._on_milestone,
            self._on_session,
            self._on_return,
            self._on_resolve,
            self._on_survey,
            self._on_subscription,
        )
        keys = self.user_ids
        parts = self._part
        offsets = self._offsets
        bad_counts = self._bad_counts
        ring = self._ring
        bad = c.bad_fraction
        misroute = c.bad_fraction / 5 if c.misrouted_fraction is None else c.misrouted_fraction
        good_top = 1.0 - misroute
        start = c.start_ms
        step = 1000.0 / c.rate
        key: str | None
        for i in range(c.record_count):
            rts = start + int(i * step)
            r = rng_random()
            if r < bad:
                kind, u, topic, payload = self._bad(rts)
                bad_counts[kind] += 1
                key = keys[u]
                part = parts[u]
            else:
                due = heap[0][0] if heap else math.inf
                if due <= rts and due <= cal_due:
                    _, _, kind_i, u, arg = heappop(heap)
                    if kind_i == _K_SESSION:  # most records: `_on_session`, inlined
                        plan = arg[1]
                        idx = arg[2]
                        _, typ, props = plan[idx]
                        payload = product(u, typ, rts, arg[0], props)
                        topic = PRODUCT_TOPIC
                        idx += 1
                        if idx < len(plan):
                            arg[2] = idx
                            heappush(heap, (rts + plan[idx][0], seq(), _K_SESSION, u, arg))
                    else:
                        topic, u, payload = handlers[kind_i](rts, u, arg)
                elif cal_due <= rts:
                    _, _, kind_i, u, arg = calendar[cal_i]
                    cal_i += 1
                    cal_due = calendar[cal_i][0] if cal_i < len(calendar) else math.inf
                    topic, u, payload = handlers[kind_i](rts, u, arg)
                else:
                    topic, u, payload = self._spontaneous(rts)
                if r > good_top and topic == PRODUCT_TOPIC:
                    key, part = self._misroute(u)
                    bad_counts["misrouted"] += 1
                else:
                    key = keys[u]
                    part = parts[u]
                if not i & 15:
                    if len(ring) < 1024:
                        ring.append((topic, u, payload, rts))
                    else:
                        ring[self._ring_at] = (topic, u, payload, rts)
                    self._ring_at = (self._ring_at + 1) & 1023
            topic_offsets = offsets[topic]
            offset = topic_offsets[part]
            topic_offsets[part] = offset + 1
            yield {
                "topic": topic,
                "partition": part,
                "offset": offset,
                "ts": rts,
                "key": key,
                "payload": payload,
            }


def _daily_probability(r: float, x: float) -> float:
    """How likely a user is to be active on a given weekday: ~20% power users, ~40% regulars,
    ~40% occasional users."""
    if r < 0.2:
        return 0.75 + 0.2 * x
    if r < 0.6:
        return 0.3 + 0.3 * x
    return 0.04 + 0.16 * x


def _spoil_json(good: str, how: int, r: float) -> str:
    """A value that is not standard JSON (or not UTF-8), made from a good one."""
    if how == 0:
        return good[: 5 + int(r * (len(good) - 6))]  # truncated
    if how == 1:
        return good[:-1] + ',"x":NaN}'
    if how == 2:
        return "\ufeff" + good  # a byte-order mark
    if how == 3:
        return good.replace('"ts"', "'ts'", 1)
    if how == 4:
        return good[:-1] + ",}"  # a trailing comma
    if how == 5:
        return good[:-1] + ',"deep":' + "[" * 70 + "]" * 70 + "}"  # 71 levels
    if how == 6:
        return good[:-1] + ',"note":"\ud800"}'  # a lone surrogate: the value is not UTF-8
    return "hello world"


def simulate(config: SimConfig) -> Iterator[dict[str, Any]]:
    """The envelopes of one simulated stream (see the module docstring)."""
    return iter(Simulator(config))
