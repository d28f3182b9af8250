"""Entity state of the engine: one object per user (user partition) and per customer (account
partition), each bounded by the retention horizons of docs/metrics.md ("How long identities must
be remembered") and documented in docs/architecture.md.

Every field is optional (None until first needed) so an idle user costs little. Instants are
`int` nanoseconds (or an exact `Fraction` for over-precise timestamps).

"Folding": an instant at or before the partition's fold point F (the newest record timestamp,
or the as-of instant in a replay, whichever is earlier) can never be after a later snapshot's T
(T >= F is required), so only its aggregate is kept (a max, a min). Instants after F are kept in a
short `pending` list until F passes them.
"""

from __future__ import annotations

from typing import Any

from streams.timeutil import Instant

# codes of the facts kept for the short hour windows (24h): see UserState.facts
F_CLICK = 0
F_IMPRESSION = 1
F_CANCEL = 2
F_SOCIAL = 3  # + index of the action in SOCIAL_ACTIONS

SV_CSAT = 0
SV_NPS = 1
SV_CES = 2
SURVEY_CODES = {"csat": SV_CSAT, "nps": SV_NPS, "ces": SV_CES}

# account fact kinds
K_NONE = 0
K_NPS = 1
K_CSAT = 2
K_SUB_START = 3
K_SUB_CANCEL = 4
K_ORDER = 5


class UserState:
    """Everything the engine keeps about one user (key: user_id), in the partition that owns it."""

    __slots__ = (
        "answers",
        "days",
        "facts",
        "features",
        "ids",
        "last",
        "lastp",
        "ms",
        "offs",
        "orders",
        "resp",
        "returns",
        "sessions",
        "signup",
        "tickets",
    )

    def __init__(self) -> None:
        # live pipeline only: (source topic, partition) -> last offset applied to this user, so
        # a redelivered record changes nothing (docs/architecture.md, "idempotency")
        self.offs: dict[tuple[str, int], int] | None = None
        # event_id -> ts: dedupe, kept lateness + 1h after ts
        self.ids: dict[str, Instant] = {}
        # response_id -> ts: dedupe of survey answers, kept lateness + 1h after ts
        self.resp: dict[str, Instant] | None = None
        # (ts, code) of clicks, impressions, social interactions and cancellations: kept 24h
        self.facts: list[tuple[Instant, int]] | None = None
        # (ts, survey code, score, touchpoint): kept 30d
        self.answers: list[tuple[Instant, int, int, str | None]] | None = None
        # the first accepted signup's ts; never forgotten
        self.signup: Instant | None = None
        # milestones (activation events, value event, "step:<funnel step>"): once the signup is
        # known, the earliest ts at or after it; before, the list of ts seen (kept lateness + 1h)
        self.ms: dict[str, Any] | None = None
        # local day -> earliest activity ts that day: kept 31 days
        self.days: dict[int, Instant] | None = None
        # last activity: folded max, and the pending instants after F
        self.last: Instant | None = None
        self.lastp: list[Instant] | None = None
        # feature -> [folded last use, pending list or None]: kept 31 days
        self.features: dict[str, list[Any]] | None = None
        # session_id -> [start, end, first page view, second page view, newest event ts]
        self.sessions: dict[str, list[Any]] | None = None
        # ticket_id -> [opened, resolved]: an open ticket is kept; resolved ones 7d + lateness
        self.tickets: dict[str, list[Any]] | None = None
        # order_id -> ts of the first purchase, and of the first return: 90d + lateness
        self.orders: dict[str, Instant] | None = None
        self.returns: dict[str, Instant] | None = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # pickled (copy.copy, multiprocessing) as the tuple of slot values; the worker's tables
        # never pickle: they hold streams/codec.py's encoding
        return (_restore_user, tuple(getattr(self, n) for n in _USER_SLOTS))

    def is_empty(self) -> bool:
        return (
            self.signup is None
            and not self.ids
            and not self.resp
            and not self.facts
            and not self.answers
            and not self.ms
            and not self.days
            and self.last is None
            and not self.lastp
            and not self.features
            and not self.sessions
            and not self.tickets
            and not self.orders
            and not self.returns
        )


class AccountState:
    """What the engine keeps about one customer (key: account_id, else user_id)."""

    __slots__ = (
        "csat",
        "csatp",
        "days",
        "first",
        "last",
        "lastp",
        "nps",
        "npsp",
        "offs",
        "orders",
        "sub",
        "subp",
    )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_restore_account, tuple(getattr(self, n) for n in _ACCOUNT_SLOTS))

    def __init__(self, first: Instant) -> None:
        # earliest ts of any accepted record: the customer exists from then on; never forgotten
        self.first: Instant = first
        # live pipeline only: (source topic, partition, user partition) -> last offset applied
        self.offs: dict[tuple[str, int, int], int] | None = None
        self.days: dict[int, Instant] | None = None
        self.last: Instant | None = None
        self.lastp: list[Instant] | None = None
        # latest answers as (ts, -score): folded best and pending
        self.nps: tuple[Instant, int] | None = None
        self.npsp: list[tuple[Instant, int]] | None = None
        self.csat: tuple[Instant, int] | None = None
        self.csatp: list[tuple[Instant, int]] | None = None
        # subscription events as (ts, 1 if cancellation else 0): the latest at or before F - 30d,
        # and the list of later ones
        self.sub: tuple[Instant, int] | None = None
        self.subp: list[tuple[Instant, int]] | None = None
        # (ts, amount) of the customer's orders: kept 90d
        self.orders: list[tuple[Instant, float]] | None = None


_USER_SLOTS: tuple[str, ...] = UserState.__slots__
_ACCOUNT_SLOTS: tuple[str, ...] = AccountState.__slots__


def _restore_user(*values: Any) -> UserState:
    u = UserState.__new__(UserState)
    for name, value in zip(_USER_SLOTS, values, strict=True):
        setattr(u, name, value)
    return u


def _restore_account(*values: Any) -> AccountState:
    a = AccountState.__new__(AccountState)
    for name, value in zip(_ACCOUNT_SLOTS, values, strict=True):
        setattr(a, name, value)
    return a
