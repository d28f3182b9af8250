"""The engine: the metric families of docs/metrics.md as state machines over mapping-like stores.

Two kinds of partitions, as the live pipeline splits them:
- `UserPartition`: records keyed by user. It decides accepted / duplicate, keeps per-user state
  (one `UserState` per user_id) and emits one *account fact* per accepted record.
- `AccountPartition`: account facts keyed by customer; keeps one `AccountState` per customer
  (subscriptions, orders per customer, health inputs).

A snapshot as of T is computed by `partial(T)` on every partition and `finalize(merge(...))`.
Partials hold only counts, sums and lists, so merging partitions is exact and order-free.

Nothing here does I/O or imports faust, aiokafka or redis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Any

from streams.config import Config
from streams.distribution import Distribution
from streams.records import REJECT_REASONS, SOCIAL_ACTIONS, ProductEvent, SurveyAnswer
from streams.state import (
    F_CANCEL,
    F_CLICK,
    F_IMPRESSION,
    F_SOCIAL,
    K_CSAT,
    K_NONE,
    K_NPS,
    K_ORDER,
    K_SUB_CANCEL,
    K_SUB_START,
    SURVEY_CODES,
    SV_CES,
    SV_CSAT,
    SV_NPS,
    AccountState,
    UserState,
)
from streams.timeutil import DAY, HOUR, NS, DayCalc, Instant, format_instant

ACCEPTED = 0
DUPLICATE = 1

SIGNALS: tuple[str, ...] = ("cancellation", "nps_detractor", "csat_negative", "dormant")
_SOCIAL_CODE = {a: F_SOCIAL + i for i, a in enumerate(SOCIAL_ACTIONS)}

# (customer, ts, record_ts, is_activity, kind, value)
AccountFact = tuple[str, Instant, int, bool, int, float]
EmitFact = Callable[[str, Instant, int, bool, int, float], None]

_H1 = HOUR
_H24 = 24 * HOUR
_D7 = 7 * DAY
_D14 = 14 * DAY
_D30 = 30 * DAY
_D31 = 31 * DAY
_D90 = 90 * DAY


def _note_activity(s: UserState | AccountState, day: int, ts: Instant, fold: Instant) -> None:
    """An activity at ts: the earliest ts of its local day, and the last activity (folded when
    at or before the fold point F, else pending)."""
    days = s.days
    if days is None:
        s.days = {day: ts}
    else:
        cur = days.get(day)
        if cur is None or ts < cur:
            days[day] = ts
    if ts <= fold:
        if s.last is None or ts > s.last:
            s.last = ts
    elif s.lastp is None:
        s.lastp = [ts]
    else:
        s.lastp.append(ts)


def _max_below(folded: Instant | None, pending: list[Instant] | None, t: Instant) -> Instant | None:
    best = folded
    if pending:
        top = max(pending)
        if top <= t:  # the usual case: the whole list is at or before t
            return top if best is None or top > best else best
        for p in pending:
            if p <= t and (best is None or p > best):
                best = p
    return best


class _Clock:
    """A partition's time: W, the newest record timestamp seen (ns), and F, the fold point:
    W - margin, but never later than `fold_limit` (the as-of in replay; live, the worker's clock
    minus the margin, so a producer whose clock runs ahead cannot push F past "now").
    Expiry runs as F moves."""

    def _init_clock(
        self, config: Config, fold_limit: Instant | None, daycalc: DayCalc | None
    ) -> None:
        self.fold_limit = fold_limit  # replay: the as-of instant; live: set per micro-batch
        self.daycalc = daycalc or DayCalc(config.timezone)
        # the zone's fixed UTC offset (ns) when it has one (UTC): the hot paths compute the
        # local day inline, as DayCalc.day does
        self.day_offset: int | None = self.daycalc._fixed
        self.margin = int(config.fold_margin_seconds * NS)
        self.watermark: int | None = None  # W: newest record ts seen (ns)
        self.fold: Instant = -(10**30)  # F
        self._last_sweep: Instant | None = None

    def see_record_ts(self, record_ts_ns: int) -> None:
        w = self.watermark
        if w is None or record_ts_ns > w:
            self.watermark = record_ts_ns
            f: Instant = record_ts_ns - self.margin
            lim = self.fold_limit  # replay: the as-of; live: the worker's clock - margin
            if lim is not None and lim < f:
                f = lim
            if f > self.fold:
                self.fold = f

    def maybe_sweep(self, every: int = 6 * HOUR) -> None:
        """Expire state when F has moved `every` past the last sweep (amortised)."""
        if self._last_sweep is None:
            self._last_sweep = self.fold
        elif self.fold - self._last_sweep >= every:
            self.sweep()

    def sweep(self) -> object:
        raise NotImplementedError


class UserPartition(_Clock):
    """State and counters of one user-keyed partition."""

    def __init__(
        self,
        config: Config,
        users: MutableMapping[str, UserState] | None = None,
        emit: EmitFact | None = None,
        fold_limit: Instant | None = None,
        daycalc: DayCalc | None = None,
    ) -> None:
        self.config = config
        self._init_clock(config, fold_limit, daycalc)
        self.users: MutableMapping[str, UserState] = {} if users is None else users
        self.emit: EmitFact = emit if emit is not None else _drop_fact
        self.lateness = config.lateness_ns
        self.inactive = frozenset(config.inactive_events)
        self.milestones = frozenset((*config.activation_events, config.value_event))
        self.steps = {s: "step:" + s for s in config.funnel_steps}
        self.accepted = 0
        self.duplicates = 0
        self.rejected = dict.fromkeys(REJECT_REASONS, 0)

    # ---- time ------------------------------------------------------------------------------

    def count_reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    # ---- records ---------------------------------------------------------------------------

    def product(self, ev: ProductEvent, ts: Instant) -> int:
        """Apply a validated product event (time checks passed). Returns ACCEPTED or DUPLICATE;
        the caller counts the outcome (so a re-applied record is never counted twice)."""
        uid = ev.user_id
        users = self.users
        u = users.get(uid)
        if u is None:
            u = UserState()
            users[uid] = u
        ids = u.ids
        eid = ev.event_id
        if eid in ids:
            return DUPLICATE
        ids[eid] = ts
        fold = self.fold
        t = ev.type
        activity = t not in self.inactive
        if activity:
            # _note_activity(u, self.daycalc.day(ts), ts, fold), inline (the hot path)
            off = self.day_offset
            day = (ts + off) // DAY if off is not None else self.daycalc.day(ts)
            days = u.days
            if days is None:
                u.days = {day: ts}
            else:
                cur = days.get(day)
                if cur is None or ts < cur:
                    days[day] = ts
            if ts <= fold:
                last = u.last
                if last is None or ts > last:
                    u.last = ts
            elif u.lastp is None:
                u.lastp = [ts]
            else:
                u.lastp.append(ts)
        kind = K_NONE
        value = 0.0
        props = ev.props
        if t in self.milestones:
            self._milestone(u, t, ts)
        if t == "page_view":
            # _session(u, ev.session_id, t, ts), inline (the most common event)
            ss = u.sessions
            if ss is None:
                ss = u.sessions = {}
            sid = ev.session_id
            st = ss.get(sid)  # type: ignore[arg-type]
            if st is None:
                ss[sid] = [None, None, ts, None, ts]  # type: ignore[index]
            else:
                if ts > st[4]:
                    st[4] = ts
                a, b = st[2], st[3]
                if a is None:
                    st[2] = ts
                elif ts < a:
                    st[2], st[3] = ts, a
                elif b is None or ts < b:
                    st[3] = ts
        elif t == "session_start" or t == "session_end":
            self._session(u, ev.session_id, t, ts)  # type: ignore[arg-type]
        elif t == "feature_used":
            assert props is not None
            feats = u.features
            if feats is None:
                feats = u.features = {}
            f = feats.get(props["feature"])
            if f is None:
                feats[props["feature"]] = [ts, None] if ts <= fold else [None, [ts]]
            elif ts <= fold:
                if f[0] is None or ts > f[0]:
                    f[0] = ts
            elif f[1] is None:
                f[1] = [ts]
            else:
                f[1].append(ts)
        elif t == "click" or t == "impression":
            self._fact(u, ts, F_CLICK if t == "click" else F_IMPRESSION)
        elif t == "social_interaction":
            assert props is not None
            self._fact(u, ts, _SOCIAL_CODE[props["action"]])
        elif t == "onboarding_step":
            assert props is not None
            key = self.steps.get(props["step"])
            if key is not None:
                self._milestone(u, key, ts)
        elif t == "signup":
            if u.signup is None:
                u.signup = ts
                ms = u.ms
                if ms:
                    for k, v in list(ms.items()):
                        if type(v) is list:
                            after = [x for x in v if x >= ts]
                            if after:
                                ms[k] = min(after)
                            else:
                                del ms[k]
        elif t == "purchase":
            assert props is not None
            oid = props["order_id"]
            orders = u.orders
            if orders is None:
                orders = u.orders = {}
            if oid not in orders:
                orders[oid] = ts
                kind = K_ORDER
                value = props["amount"]
        elif t == "return":
            assert props is not None
            rets = u.returns
            if rets is None:
                rets = u.returns = {}
            if props["order_id"] not in rets:
                rets[props["order_id"]] = ts
        elif t == "ticket_opened" or t == "ticket_resolved":
            assert props is not None
            tks = u.tickets
            if tks is None:
                tks = u.tickets = {}
            tk = tks.get(props["ticket_id"])
            if tk is None:
                tk = tks[props["ticket_id"]] = [None, None]
            i = 0 if t == "ticket_opened" else 1
            if tk[i] is None:
                tk[i] = ts
        elif t == "subscription_cancelled":
            self._fact(u, ts, F_CANCEL)
            kind = K_SUB_CANCEL
        elif t == "subscription_started":
            kind = K_SUB_START
        self.emit(ev.account_id or uid, ts, self.watermark or 0, activity, kind, value)
        return ACCEPTED

    def survey(self, ans: SurveyAnswer, ts: Instant) -> int:
        uid = ans.user_id
        u = self.users.get(uid)
        if u is None:
            u = UserState()
            self.users[uid] = u
        resp = u.resp
        if resp is None:
            resp = u.resp = {}
        rid = ans.response_id
        if rid in resp:
            return DUPLICATE
        resp[rid] = ts
        sv = SURVEY_CODES[ans.survey]
        entry = (ts, sv, ans.score, ans.touchpoint)
        if u.answers is None:
            u.answers = [entry]
        else:
            u.answers.append(entry)
        kind = K_NPS if sv == SV_NPS else K_CSAT if sv == SV_CSAT else K_NONE
        self.emit(ans.account_id or uid, ts, self.watermark or 0, False, kind, float(ans.score))
        return ACCEPTED

    def _fact(self, u: UserState, ts: Instant, code: int) -> None:
        if u.facts is None:
            u.facts = [(ts, code)]
        else:
            u.facts.append((ts, code))

    def _milestone(self, u: UserState, key: str, ts: Instant) -> None:
        ms = u.ms
        if ms is None:
            ms = u.ms = {}
        s = u.signup
        if s is None:
            lst = ms.get(key)
            if lst is None:
                ms[key] = [ts]
            else:
                lst.append(ts)
        elif ts >= s:
            cur = ms.get(key)
            if cur is None or ts < cur:
                ms[key] = ts

    def _session(self, u: UserState, sid: str, t: str, ts: Instant) -> None:
        ss = u.sessions
        if ss is None:
            ss = u.sessions = {}
        s = ss.get(sid)
        if s is None:
            s = ss[sid] = [None, None, None, None, ts]
        elif ts > s[4]:
            s[4] = ts
        if t == "page_view":
            a, b = s[2], s[3]
            if a is None:
                s[2] = ts
            elif ts < a:
                s[2], s[3] = ts, a
            elif b is None or ts < b:
                s[3] = ts
        elif t == "session_start":
            if s[0] is None:
                s[0] = ts
        elif s[1] is None:
            s[1] = ts

    # ---- expiry ----------------------------------------------------------------------------

    def sweep(self) -> int:
        """Forget what no window can reach any more; returns the number of users deleted."""
        self._last_sweep = self.fold
        users = self.users
        dead = [uid for uid, u in users.items() if self.expire_user(u)]
        for uid in dead:
            del users[uid]
        return len(dead)

    def expire_user(self, u: UserState, at: Instant | None = None) -> bool:
        """Expire one user's state in place as of the fold point `at` (default: F, and never
        later than F); True when nothing is left (the user can go)."""
        return self.expire_user_changes(u, at)[1]

    def expire_user_changes(self, u: UserState, at: Instant | None = None) -> tuple[bool, bool]:
        """`expire_user`, saying also whether it changed the state: (changed, nothing left).

        Exact: every step keeps what it keeps in order, so a container it rebuilds with as many
        items is equal to the old one; a folded instant (`last`, a feature's last use) moves only
        with an instant leaving its pending list. So "changed" is "some container lost an item,
        or an entry or a field was dropped", the same as comparing the encoded state before and
        after (tests/unit/test_codec.py checks it)."""
        f = self.fold if at is None else min(at, self.fold)
        ids_cut = f - self.lateness - HOUR
        changed = False
        if u.ids:
            n = len(u.ids)
            u.ids = {k: v for k, v in u.ids.items() if v >= ids_cut}
            changed = len(u.ids) != n
        if u.resp:
            n = len(u.resp)
            u.resp = {k: v for k, v in u.resp.items() if v >= ids_cut} or None
            changed = changed or u.resp is None or len(u.resp) != n
        if u.facts:
            n = len(u.facts)
            cut = f - _H24
            u.facts = [x for x in u.facts if x[0] > cut] or None
            changed = changed or u.facts is None or len(u.facts) != n
        if u.answers:
            n = len(u.answers)
            cut = f - _D30
            u.answers = [x for x in u.answers if x[0] > cut] or None
            changed = changed or u.answers is None or len(u.answers) != n
        if u.lastp:
            keep = [x for x in u.lastp if x > f]
            if len(keep) != len(u.lastp):
                changed = True
                for x in u.lastp:
                    if x <= f and (u.last is None or x > u.last):
                        u.last = x
            u.lastp = keep or None
        if u.days:
            n = len(u.days)
            dcut = self.daycalc.day(f) - 31
            u.days = {d: v for d, v in u.days.items() if d >= dcut} or None
            changed = changed or u.days is None or len(u.days) != n
        if u.last is not None and u.last < f - _D31 and not u.lastp:
            u.last = None  # recency is 0 and dormant is past beyond 30 days
            changed = True
        if u.features:
            cut = f - _D31
            for name, fl in list(u.features.items()):
                if fl[1]:
                    keep = [x for x in fl[1] if x > f]
                    if len(keep) != len(fl[1]):
                        changed = True
                        for x in fl[1]:
                            if x <= f and (fl[0] is None or x > fl[0]):
                                fl[0] = x
                    fl[1] = keep or None
                if fl[1] is None and (fl[0] is None or fl[0] < cut):
                    del u.features[name]
                    changed = True
            u.features = u.features or None
        if u.ms:
            s = u.signup
            if s is None:
                for k, v in list(u.ms.items()):
                    kept = [x for x in v if x >= ids_cut]
                    if kept:
                        changed = changed or len(kept) != len(v)
                        u.ms[k] = kept
                    else:
                        del u.ms[k]
                        changed = True
                u.ms = u.ms or None
            elif s < f - _D31:
                u.ms = None
                changed = True
        if u.sessions:
            n = len(u.sessions)
            cut = f - _H24 - self.lateness
            u.sessions = {k: v for k, v in u.sessions.items() if v[4] >= cut} or None
            changed = changed or u.sessions is None or len(u.sessions) != n
        if u.tickets:
            n = len(u.tickets)
            cut = f - 7 * DAY - self.lateness
            u.tickets = {k: v for k, v in u.tickets.items() if v[1] is None or v[1] >= cut} or None
            changed = changed or u.tickets is None or len(u.tickets) != n
        if u.orders:
            n = len(u.orders)
            cut = f - _D90 - self.lateness
            u.orders = {k: v for k, v in u.orders.items() if v >= cut} or None
            changed = changed or u.orders is None or len(u.orders) != n
        if u.returns:
            n = len(u.returns)
            cut = f - _D90 - self.lateness
            u.returns = {k: v for k, v in u.returns.items() if v >= cut} or None
            changed = changed or u.returns is None or len(u.returns) != n
        return changed, u.is_empty()

    # ---- the snapshot ----------------------------------------------------------------------

    def partial(self, t: Instant) -> Partial:
        p = Partial()
        p.accepted = self.accepted
        p.duplicates = self.duplicates
        for r, n in self.rejected.items():
            p.rejected[r] += n
        cfg = self.config
        dc = self.daycalc
        d0 = dc.day(t)
        steps = [(s, "step:" + s) for s in cfg.funnel_steps]
        act_keys = cfg.activation_events
        value_event = cfg.value_event
        for u in self.users.values():
            self._user_partial(p, u, t, d0, dc, steps, act_keys, value_event)
        # sorted (stable: equal values keep their order): `finalize` selects the median across
        # the partitions' sorted runs (streams/distribution.py) without joining them. The
        # durations are sorted too: their order means nothing (/metrics makes histograms of
        # them), and a sorted list is what a partition that keeps its partial current as
        # records arrive (the compiled core's) can list without visiting every user.
        p.ttfv.sort()
        p.session_durs.sort()
        p.resolution_durs.sort()
        return p

    def _user_partial(
        self,
        p: Partial,
        u: UserState,
        t: Instant,
        d0: int,
        dc: DayCalc,
        steps: list[tuple[str, str]],
        act_keys: tuple[str, ...],
        value_event: str,
    ) -> None:
        days = u.days
        if days:
            active = {d for d, m in days.items() if m <= t and d0 - 30 <= d <= d0}
        else:
            active = set()
        on_d0 = d0 in active
        if active:
            if on_d0:
                p.dau += 1
            if any(d >= d0 - 6 for d in active):
                p.wau += 1
            if any(d >= d0 - 29 for d in active):
                p.mau += 1
        s = u.signup
        sday = dc.day(s) if s is not None and s <= t else None
        if on_d0:
            if sday == d0:
                p.new += 1
            elif d0 - 1 in active:
                p.returning += 1
            else:
                p.resurrecting += 1
        elif d0 - 1 in active:
            p.dormant_lifecycle += 1
        if sday is not None:
            assert s is not None
            ms = u.ms or {}
            if d0 - 13 <= sday <= d0 - 7:
                p.mature += 1
                end = s + 7 * DAY
                if all(
                    (m := ms.get(k)) is not None and type(m) is not list and m < end and m <= t
                    for k in act_keys
                ):
                    p.activated += 1
                if days and any(d > sday and m < end and m <= t for d, m in days.items()):
                    p.returned += 1
            if s > t - _D30:
                m = ms.get(value_event)
                if m is not None and type(m) is not list and m <= t:
                    p.ttfv.append(m - s)
                for step, key in steps:
                    m = ms.get(key)
                    if m is not None and type(m) is not list and m <= t:
                        p.funnel[step] = p.funnel.get(step, 0) + 1
            for n, idx in ((1, 0), (7, 1), (30, 2)):
                if d0 - n - 7 <= sday <= d0 - n - 1:
                    p.ret_cohort[idx] += 1
                    if (sday + n) in active:
                        p.ret_kept[idx] += 1
        if u.features:
            lo = d0 - 29
            for name, fl in u.features.items():
                last = _max_below(fl[0], fl[1], t)
                if last is not None and dc.day(last) >= lo:
                    p.features[name] = p.features.get(name, 0) + 1
        if u.last is not None or u.lastp:
            last = _max_below(u.last, u.lastp, t)
            if last is not None:
                age = t - last - _D14  # the dormant signal is at last + 14d
                if 0 <= age < _H24:
                    p.sig24["dormant"] += 1
                    if age < _H1:
                        p.sig1["dormant"] += 1
        if u.facts:
            lo24 = t - _H24
            for ts, code in u.facts:
                if lo24 < ts <= t:
                    if code == F_CLICK:
                        p.clicks += 1
                    elif code == F_IMPRESSION:
                        p.impressions += 1
                    elif code == F_CANCEL:
                        p.sig24["cancellation"] += 1
                        if ts > t - _H1:
                            p.sig1["cancellation"] += 1
                    else:
                        p.social[SOCIAL_ACTIONS[code - F_SOCIAL]] += 1
        if u.answers:
            for ans in u.answers:
                age = t - ans[0]
                if 0 <= age < _D30:
                    p.add_answer(ans[1], ans[2], ans[3], age)
        if u.sessions:
            lo24 = t - _H24
            for st in u.sessions.values():
                end = st[1]
                if end is not None and lo24 < end <= t:
                    p.sessions += 1
                    start = st[0]
                    if start is not None and start <= t:
                        p.session_dur += end - start
                        p.session_dur_n += 1
                        p.session_durs.append(end - start)
                    a, b = st[2], st[3]
                    if a is not None and a <= t and (b is None or b > t):
                        p.bounces += 1
        if u.tickets:
            lo24 = t - _H24
            lo7 = t - _D7
            for o, r in u.tickets.values():
                if o is None or o > t:
                    continue
                if o > lo24:
                    p.tickets_opened += 1
                if r is None or r > t:
                    p.open_tickets += 1
                elif r > lo7:
                    p.resolution += r - o
                    p.resolution_n += 1
                    p.resolution_durs.append(r - o)
        if u.returns:
            lo90 = t - _D90
            for r in u.returns.values():
                if lo90 < r <= t:
                    p.returns += 1


def _drop_fact(customer: str, ts: Instant, rts: int, act: bool, kind: int, value: float) -> None:
    return None


class AccountPartition(_Clock):
    """State of one customer-keyed partition, fed by account facts."""

    def __init__(
        self,
        config: Config,
        accounts: MutableMapping[str, AccountState] | None = None,
        fold_limit: Instant | None = None,
        daycalc: DayCalc | None = None,
    ) -> None:
        self.config = config
        self._init_clock(config, fold_limit, daycalc)
        self.accounts: MutableMapping[str, AccountState] = {} if accounts is None else accounts

    def fact(
        self, customer: str, ts: Instant, record_ts: int, activity: bool, kind: int, value: float
    ) -> None:
        w = self.watermark
        if w is None or record_ts > w:  # see_record_ts(record_ts), inline
            self.watermark = record_ts
            f: Instant = record_ts - self.margin
            lim = self.fold_limit
            if lim is not None and lim < f:
                f = lim
            if f > self.fold:
                self.fold = f
        fold = self.fold
        accounts = self.accounts
        a = accounts.get(customer)
        if a is None:
            a = accounts[customer] = AccountState(ts)
        elif ts < a.first:
            a.first = ts
        if activity:
            # _note_activity(a, self.daycalc.day(ts), ts, fold), inline (the hot path)
            off = self.day_offset
            day = (ts + off) // DAY if off is not None else self.daycalc.day(ts)
            days = a.days
            if days is None:
                a.days = {day: ts}
            else:
                cur = days.get(day)
                if cur is None or ts < cur:
                    days[day] = ts
            if ts <= fold:
                last = a.last
                if last is None or ts > last:
                    a.last = ts
            elif a.lastp is None:
                a.lastp = [ts]
            else:
                a.lastp.append(ts)
        if kind == K_NONE:
            return
        if kind == K_ORDER:
            if a.orders is None:
                a.orders = [(ts, value)]
            else:
                a.orders.append((ts, value))
        elif kind in (K_NPS, K_CSAT):
            key = (ts, -int(value))
            if ts <= fold:
                if kind == K_NPS:
                    if a.nps is None or key > a.nps:
                        a.nps = key
                elif a.csat is None or key > a.csat:
                    a.csat = key
            elif kind == K_NPS:
                if a.npsp is None:
                    a.npsp = [key]
                else:
                    a.npsp.append(key)
            elif a.csatp is None:
                a.csatp = [key]
            else:
                a.csatp.append(key)
        else:
            ev = (ts, 1 if kind == K_SUB_CANCEL else 0)
            if ts <= fold - _D30:
                if a.sub is None or ev > a.sub:
                    a.sub = ev
            elif a.subp is None:
                a.subp = [ev]
            else:
                a.subp.append(ev)

    def sweep(self) -> None:
        self._last_sweep = f = self.fold
        for a in self.accounts.values():
            self.expire_account(a, f)

    def expire_account(self, a: AccountState, at: Instant | None = None) -> bool:
        """Expire one customer's state in place as of the fold point `at` (default: F, and never
        later than F); True when it changed anything (exactly: see `expire_user_changes`). A
        customer is never deleted (its first activity is kept forever)."""
        f = self.fold if at is None else min(at, self.fold)
        dcut = self.daycalc.day(f) - 31
        changed = False
        if a.days:
            n = len(a.days)
            a.days = {d: v for d, v in a.days.items() if d >= dcut} or None
            changed = a.days is None or len(a.days) != n
        if a.lastp:
            keep = [x for x in a.lastp if x > f]
            if len(keep) != len(a.lastp):
                changed = True
                for x in a.lastp:
                    if x <= f and (a.last is None or x > a.last):
                        a.last = x
            a.lastp = keep or None
        for attr in ("nps", "csat"):
            pend = getattr(a, attr + "p")
            if pend:
                later = [k for k in pend if k[0] > f]
                if len(later) != len(pend):
                    changed = True
                    best = getattr(a, attr)
                    for k in pend:
                        if k[0] <= f and (best is None or k > best):
                            best = k
                    setattr(a, attr, best)
                setattr(a, attr + "p", later or None)
        if a.subp:
            cut = f - _D30
            later = [ev for ev in a.subp if ev[0] > cut]
            if len(later) != len(a.subp):
                changed = True
                for ev in a.subp:
                    if ev[0] <= cut and (a.sub is None or ev > a.sub):
                        a.sub = ev
            a.subp = later or None
        if a.orders:
            n = len(a.orders)
            cut = f - _D90
            a.orders = [o for o in a.orders if o[0] > cut] or None
            changed = changed or a.orders is None or len(a.orders) != n
        return changed

    def partial(self, t: Instant) -> Partial:
        p = Partial()
        dc = self.daycalc
        t30 = t - _D30
        t90 = t - _D90
        for a in self.accounts.values():
            if a.first > t:
                continue
            # subscriptions
            was = _subscribed(a, t30)
            now = _subscribed(a, t)
            if now:
                p.subscribers += 1
            if was:
                p.sub_start += 1
                if not now:
                    p.sub_lost += 1
            elif now:
                p.sub_new += 1
            # orders
            if a.orders:
                n90 = n30 = 0
                for ts, amount in a.orders:
                    if t90 < ts <= t:
                        n90 += 1
                        p.revenue_90.append(amount)
                        if ts > t30:
                            n30 += 1
                            p.revenue_30.append(amount)
                p.orders_90 += n90
                if n90:
                    p.customers_1 += 1
                    if n90 >= 2:
                        p.customers_2 += 1
                if n30:
                    p.customers_30 += 1
            # health
            h = customer_health(a, t, dc)[0]
            p.health.append(h)
            if health_at_risk(a, t, dc, h):
                p.at_risk += 1
        return p


def customer_health(
    a: AccountState, t: Instant, daycalc: DayCalc
) -> tuple[float, float, float, float]:
    """(health, recency, frequency, sentiment) of a customer at T (docs/metrics.md, "Customer
    health"). Pure; the caller decides whether the customer exists at T (`a.first <= t`)."""
    last = _max_below(a.last, a.lastp, t)
    if last is None:
        recency = freq = 0.0
    else:
        recency = float(max(0.0, 1 - (t - last) / _D30))
        d0 = daycalc.day(t)
        lo = d0 - 29
        n_days = sum(1 for d, m in (a.days or {}).items() if lo <= d <= d0 and m <= t)
        freq = min(1.0, n_days / 20)
    best = _latest(a.nps, a.npsp, t)
    if best is not None:
        sentiment = -best[1] / 10
    else:
        best = _latest(a.csat, a.csatp, t)
        sentiment = (-best[1] - 1) / 4 if best is not None else 0.5
    h = 100 * (0.4 * recency + 0.3 * freq + 0.3 * sentiment)
    return h, recency, freq, sentiment


def health_at_risk(a: AccountState, t: Instant, daycalc: DayCalc, health: float) -> bool:
    """health < 40, decided exactly (with fractions) when the float is within 1e-6 of 40."""
    if abs(health - 40) >= 1e-6:
        return health < 40
    last = _max_below(a.last, a.lastp, t)
    er: Fraction = Fraction(0)
    ef: Fraction = Fraction(0)
    if last is not None:
        d0 = daycalc.day(t)
        n_days = sum(1 for d, m in (a.days or {}).items() if d0 - 29 <= d <= d0 and m <= t)
        er = max(Fraction(0), 1 - Fraction(t - last, _D30))
        ef = min(Fraction(1), Fraction(n_days, 20))
    best = _latest(a.nps, a.npsp, t)
    if best is not None:
        es = Fraction(-best[1], 10)
    else:
        best = _latest(a.csat, a.csatp, t)
        es = Fraction(-best[1] - 1, 4) if best is not None else Fraction(1, 2)
    eh = 100 * (Fraction(2, 5) * er + Fraction(3, 10) * ef + Fraction(3, 10) * es)
    return eh < 40


def _subscribed(a: AccountState, t: Instant) -> bool:
    best = a.sub
    if a.subp:
        for ev in a.subp:
            if ev[0] <= t and (best is None or ev > best):
                best = ev
    return best is not None and best[1] == 0


def _latest(
    folded: tuple[Instant, int] | None, pending: list[tuple[Instant, int]] | None, t: Instant
) -> tuple[Instant, int] | None:
    best = folded
    if pending:
        for k in pending:
            if k[0] <= t and (best is None or k > best):
                best = k
    return best


_SURVEY_WINDOWS = (_H1, _H24, 7 * DAY, _D30)


@dataclass
class SurveyCounts:
    csat_n: list[int] = field(default_factory=lambda: [0, 0, 0])  # 1h, 24h, 7d
    csat_pos: list[int] = field(default_factory=lambda: [0, 0, 0])
    nps_n: list[int] = field(default_factory=lambda: [0, 0])  # 7d, 30d
    nps_pro: list[int] = field(default_factory=lambda: [0, 0])
    nps_det: list[int] = field(default_factory=lambda: [0, 0])
    ces_n: list[int] = field(default_factory=lambda: [0, 0])
    ces_sum: list[int] = field(default_factory=lambda: [0, 0])

    def add(self, sv: int, score: int, age: Instant) -> None:
        if sv == SV_CSAT:
            for i, w in enumerate((_H1, _H24, _D7)):
                if age < w:
                    self.csat_n[i] += 1
                    if score >= 4:
                        self.csat_pos[i] += 1
        elif sv == SV_NPS:
            for i, w in enumerate((_D7, _D30)):
                if age < w:
                    self.nps_n[i] += 1
                    if score >= 9:
                        self.nps_pro[i] += 1
                    elif score <= 6:
                        self.nps_det[i] += 1
        elif sv == SV_CES:
            for i, w in enumerate((_D7, _D30)):
                if age < w:
                    self.ces_n[i] += 1
                    self.ces_sum[i] += score

    def merge(self, o: SurveyCounts) -> None:
        for name in ("csat_n", "csat_pos", "nps_n", "nps_pro", "nps_det", "ces_n", "ces_sum"):
            a, b = getattr(self, name), getattr(o, name)
            for i in range(len(a)):
                a[i] += b[i]

    def values(self) -> dict[str, Any]:
        return {
            "csat_pct_1h": _pct(self.csat_pos[0], self.csat_n[0]),
            "csat_pct_24h": _pct(self.csat_pos[1], self.csat_n[1]),
            "csat_pct_7d": _pct(self.csat_pos[2], self.csat_n[2]),
            "csat_responses_24h": self.csat_n[1],
            "nps_7d": _pct(self.nps_pro[0] - self.nps_det[0], self.nps_n[0]),
            "nps_30d": _pct(self.nps_pro[1] - self.nps_det[1], self.nps_n[1]),
            "nps_responses_30d": self.nps_n[1],
            "ces_avg_7d": _ratio(self.ces_sum[0], self.ces_n[0]),
            "ces_avg_30d": _ratio(self.ces_sum[1], self.ces_n[1]),
        }


@dataclass
class Partial:
    """Mergeable contributions of one partition to a snapshot at T."""

    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECT_REASONS, 0))
    dau: int = 0
    wau: int = 0
    mau: int = 0
    new: int = 0
    returning: int = 0
    resurrecting: int = 0
    dormant_lifecycle: int = 0
    features: dict[str, int] = field(default_factory=dict)
    surveys: SurveyCounts = field(default_factory=SurveyCounts)
    by_tp: dict[str, SurveyCounts] = field(default_factory=dict)
    mature: int = 0
    activated: int = 0
    returned: int = 0
    ttfv: Distribution = field(default_factory=Distribution)  # durations (ns), sorted runs
    funnel: dict[str, int] = field(default_factory=dict)
    ret_cohort: list[int] = field(default_factory=lambda: [0, 0, 0])
    ret_kept: list[int] = field(default_factory=lambda: [0, 0, 0])
    subscribers: int = 0
    sub_start: int = 0
    sub_lost: int = 0
    sub_new: int = 0
    orders_90: int = 0
    revenue_90: list[float] = field(default_factory=list)
    revenue_30: list[float] = field(default_factory=list)
    customers_1: int = 0
    customers_2: int = 0
    customers_30: int = 0
    returns: int = 0
    sessions: int = 0
    session_dur: Instant = 0
    session_dur_n: int = 0
    session_durs: list[Instant] = field(default_factory=list)  # each of those durations (ns)
    bounces: int = 0
    clicks: int = 0
    impressions: int = 0
    social: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SOCIAL_ACTIONS, 0))
    tickets_opened: int = 0
    open_tickets: int = 0
    resolution: Instant = 0
    resolution_n: int = 0
    resolution_durs: list[Instant] = field(default_factory=list)  # each resolution time (ns)
    health: Distribution = field(default_factory=Distribution)  # scores, with sum terms
    at_risk: int = 0
    sig1: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    sig24: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))

    def add_answer(self, sv: int, score: int, tp: str | None, age: Instant) -> None:
        self.surveys.add(sv, score, age)
        if tp is not None:
            c = self.by_tp.get(tp)
            if c is None:
                c = self.by_tp[tp] = SurveyCounts()
            c.add(sv, score, age)
        if age < _H24:
            sig = None
            if sv == SV_NPS and score <= 6:
                sig = "nps_detractor"
            elif sv == SV_CSAT and score <= 2:
                sig = "csat_negative"
            if sig is not None:
                self.sig24[sig] += 1
                if age < _H1:
                    self.sig1[sig] += 1

    def merge(self, o: Partial) -> Partial:
        for f in fields(o):
            name = f.name
            value = getattr(o, name)
            mine = getattr(self, name)
            if isinstance(value, int | Fraction) and not isinstance(value, bool):
                setattr(self, name, mine + value)
            elif isinstance(value, Distribution):
                mine.merge(value)
            elif isinstance(value, list):
                if name in ("ret_cohort", "ret_kept"):
                    for i, v in enumerate(value):
                        mine[i] += v
                else:
                    mine.extend(value)
            elif isinstance(value, SurveyCounts):
                mine.merge(value)
            elif name == "by_tp":
                for tp, c in value.items():
                    if tp in mine:
                        mine[tp].merge(c)
                    else:
                        sc = SurveyCounts()
                        sc.merge(c)
                        mine[tp] = sc
            else:
                for k, v in value.items():
                    mine[k] = mine.get(k, 0) + v
        return self


def _pct(num: int | Instant, den: int) -> float | None:
    return None if den == 0 else float(Fraction(num) * 100 / den)


def _ratio(num: int | Instant, den: int) -> float | None:
    return None if den == 0 else float(Fraction(num) / den)


def finalize(p: Partial, t: Instant, config: Config) -> dict[str, Any]:
    """The snapshot (docs/metrics.md §6) from the merged partial of every partition."""
    churn = _pct(p.sub_lost, p.sub_start)
    rev90 = math.fsum(p.revenue_90)
    rev30 = math.fsum(p.revenue_30)
    if churn is None or churn == 0 or p.customers_30 == 0:
        clv = None
    else:
        clv = (rev30 / p.customers_30) / (churn / 100)
    ttfv = p.ttfv
    steps = config.funnel_steps
    reached = {s: p.funnel.get(s, 0) for s in steps}
    dropoff = {
        s: _pct(reached[s] - reached[steps[i + 1]], reached[s]) for i, s in enumerate(steps[:-1])
    }
    snap: dict[str, Any] = {
        "as_of": format_instant(t),
        "dau": p.dau,
        "wau": p.wau,
        "mau": p.mau,
        "stickiness_pct": _pct(p.dau, p.mau),
        "feature_adoption_pct": {f: _pct(n, p.mau) for f, n in sorted(p.features.items())},
        "lifecycle": {
            "new": p.new,
            "returning": p.returning,
            "resurrecting": p.resurrecting,
            "dormant": p.dormant_lifecycle,
        },
        **p.surveys.values(),
        "by_touchpoint": {tp: c.values() for tp, c in sorted(p.by_tp.items())},
        "first_week_activation_pct": _pct(p.activated, p.mature),
        "first_week_return_pct": _pct(p.returned, p.mature),
        "ttfv_median_hours": None
        if not ttfv
        else float(Fraction(ttfv.kth_smallest((len(ttfv) - 1) // 2)) / HOUR),
        "funnel_reached": reached,
        "funnel_dropoff_pct": dropoff,
        "d1_retention_pct": _pct(p.ret_kept[0], p.ret_cohort[0]),
        "d7_retention_pct": _pct(p.ret_kept[1], p.ret_cohort[1]),
        "d30_retention_pct": _pct(p.ret_kept[2], p.ret_cohort[2]),
        "subscribers": p.subscribers,
        "churn_rate_pct_30d": churn,
        "retention_rate_pct_30d": _pct(p.subscribers - p.sub_new, p.sub_start),
        "orders_90d": p.orders_90,
        "revenue_90d": rev90,
        "aov_90d": None if p.orders_90 == 0 else rev90 / p.orders_90,
        "repeat_purchase_rate_pct_90d": _pct(p.customers_2, p.customers_1),
        "return_rate_pct_90d": _pct(p.returns, p.orders_90),
        "clv_estimate": clv,
        "sessions_24h": p.sessions,
        "avg_session_duration_s_24h": None
        if p.session_dur_n == 0
        else float(Fraction(p.session_dur) / p.session_dur_n / NS),
        "bounce_rate_pct_24h": _pct(p.bounces, p.sessions),
        "ctr_pct_24h": _pct(p.clicks, p.impressions),
        "social_interactions_24h": dict(p.social),
        "tickets_opened_24h": p.tickets_opened,
        "open_tickets": p.open_tickets,
        "avg_resolution_hours_7d": None
        if p.resolution_n == 0
        else float(Fraction(p.resolution) / p.resolution_n / HOUR),
        "customers_at_risk": p.at_risk,
        "health_avg": None if not p.health else p.health.fsum() / len(p.health),
        "churn_signals_1h": dict(p.sig1),
        "churn_signals_24h": dict(p.sig24),
        "accepted": p.accepted,
        "duplicates": p.duplicates,
        "rejected": dict(p.rejected),
    }
    return snap


# ---- partials on the wire (workers exchange them to gather a global snapshot) ------------------


def _enc(v: Instant) -> int | str:
    return v if isinstance(v, int) else f"{v.numerator}/{v.denominator}"


def _dec(v: int | str) -> Instant:
    if isinstance(v, int):
        return v
    f = Fraction(v)
    return int(f) if f.denominator == 1 else f


_DURATION_LISTS = ("session_durs", "resolution_durs")  # lists of ns, maybe Fractions


def partial_to_json(p: Partial) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(p):
        v = getattr(p, f.name)
        if isinstance(v, SurveyCounts):
            out[f.name] = {g.name: list(getattr(v, g.name)) for g in fields(v)}
        elif f.name == "by_tp":
            out[f.name] = {
                tp: {g.name: list(getattr(c, g.name)) for g in fields(c)} for tp, c in v.items()
            }
        elif f.name == "ttfv":
            out[f.name] = {"runs": [[_enc(x) for x in r] for r in v.runs if len(r)]}
        elif f.name == "health":
            pairs = [(r, t) for r, t in zip(v.runs, v.terms, strict=True) if len(r)]
            out[f.name] = {
                "runs": [list(r) for r, _ in pairs],
                "terms": [list(t) for _, t in pairs],
            }
        elif f.name in _DURATION_LISTS:
            out[f.name] = [_enc(x) for x in v]
        elif f.name in ("session_dur", "resolution"):
            out[f.name] = _enc(v)
        elif isinstance(v, dict | list):
            out[f.name] = v.copy()
        else:
            out[f.name] = v
    return out


def _runs(v: dict[str, Any] | list[Any]) -> list[list[Any]]:
    """The runs of a Distribution on the wire; a plain list (a worker of a release before
    `Distribution`) is one run."""
    return v["runs"] if isinstance(v, dict) else [v]


def _distribution(v: dict[str, Any] | list[Any], runs: list[list[Any]]) -> Distribution:
    d = Distribution()
    terms = v.get("terms") if isinstance(v, dict) else None
    for i, run in enumerate(runs):
        d.merge(Distribution.from_run(sorted(run), None if terms is None else terms[i]))
    return d


def partial_from_json(d: dict[str, Any]) -> Partial:
    p = Partial()
    for f in fields(p):
        if f.name not in d:
            raise ValueError(f"partial without {f.name}")
        v = d[f.name]
        if f.name == "surveys":
            p.surveys = SurveyCounts(**v)
        elif f.name == "by_tp":
            p.by_tp = {tp: SurveyCounts(**c) for tp, c in v.items()}
        elif f.name == "ttfv":
            p.ttfv = _distribution(v, [[_dec(x) for x in r] for r in _runs(v)])
        elif f.name == "health":
            p.health = _distribution(v, _runs(v))
        elif f.name in _DURATION_LISTS:
            setattr(p, f.name, [_dec(x) for x in v])
        elif f.name in ("session_dur", "resolution"):
            setattr(p, f.name, _dec(v))
        else:
            setattr(p, f.name, v)
    return p
