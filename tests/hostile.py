"""A seeded generator of hostile, bad and borderline Kafka records, each with the outcome the
metric catalogue gives it (docs/metrics.md §1, docs/decisions.md): accepted, duplicate, or the
reason of its rejection. The expectation comes from how the record was built, never from the
engine: every case below states what it makes and why the contract classifies it so.

Used by tests/unit/test_fuzz.py (1M records through the engine) and
tests/integration/test_fuzz_live.py (a sample through real workers).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
TOO_LARGE = "too_large"
BAD_JSON = "bad_json"
SCHEMA = "schema"
FUTURE = "future"
TOO_LATE = "too_late"
OUTCOMES = (ACCEPTED, DUPLICATE, TOO_LARGE, BAD_JSON, SCHEMA, FUTURE, TOO_LATE)

PE = "product-events"
SA = "survey-answers"
HOUR_MS = 3_600_000
LATENESS_MS = 48 * HOUR_MS  # the default allowed lateness
LIMIT = 65_536  # bytes of a value
BASE_MS = 1_795_000_000_000  # 2026-11-19T09:46:40Z
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
YEAR_9999_END_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
YEAR_1_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z


_SECONDS: dict[int, str] = {}


HOSTILE_KEYS = (None, "", "\x00ctl\x1f", "k" * 300, "other-user", "ünï", "😀")


def iso(ms: int, sep: str = "T", z: str = "Z") -> str:
    """RFC 3339 with milliseconds (`sep` and `z` may be varied)."""
    s = ms // 1000
    text = _SECONDS.get(s)
    if text is None:
        if len(_SECONDS) > 200_000:
            _SECONDS.clear()
        dt = EPOCH + timedelta(seconds=s)
        text = _SECONDS[s] = f"{dt.year:04d}-" + dt.strftime("%m-%dT%H:%M:%S")
    if sep != "T":
        text = text.replace("T", sep)
    return f"{text}.{ms % 1000:03d}{z}"


@dataclass
class Record:
    topic: str
    key: str | None
    value: bytes | None  # None: a tombstone
    rts: int  # the record timestamp, epoch ms
    outcome: str
    case: str


@dataclass
class Hostile:
    """`records(n)` yields n records; `expected` counts their outcomes as they are made."""

    seed: int = 1
    users: int = 20_000
    step_ms: int = 40  # record timestamps advance by this much per record
    live: bool = False  # only what a Kafka broker accepts (no negative timestamps, < 1 MB)
    expected: Counter[str] = field(default_factory=Counter)
    cases: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.n = 0
        self.rts = BASE_MS
        # accepted identities (topic, user, id) that a later copy may repeat
        self.recent: list[tuple[str, str, str]] = []
        big = 1_000_000 if not self.live else 100_000
        self._huge = b'{"pad":"' + b"x" * big + b'"}'
        self.table: list[tuple[float, Callable[[], Record]]] = [
            (30, self.valid_common),
            (6, self.valid_borderline),
            (8, self.duplicate),
            (2, self.same_id_other_user),
            (1.5, self.too_large),
            (12, self.bad_json),
            (20, self.schema),
            (4, self.future),
            (4, self.too_late),
            (2, self.invalid_copy_of_accepted),
        ]
        total = sum(w for w, _ in self.table)
        acc = 0.0
        self.cum: list[tuple[float, Callable[[], Record]]] = []
        for w, f in self.table:
            acc += w / total
            self.cum.append((acc, f))

    # ---- the stream ----------------------------------------------------------------------------

    def records(self, n: int) -> Iterator[Record]:
        rnd = self.rng.random
        cum = self.cum
        for _ in range(n):
            self.n += 1
            self.rts += self.step_ms
            r = rnd()
            make = cum[-1][1]
            for edge, f in cum:
                if r < edge:
                    make = f
                    break
            rec = make()
            if rec.outcome not in (ACCEPTED, DUPLICATE) and self.rng.random() < 0.1:
                rec.key = self.rng.choice(HOSTILE_KEYS)  # a rejected record lands anywhere
            self.expected[rec.outcome] += 1
            self.cases[rec.case] += 1
            yield rec

    # ---- helpers -------------------------------------------------------------------------------

    def user(self) -> str:
        return f"u-{self.rng.randrange(self.users)}"

    def eid(self) -> str:
        return f"e-{self.seed}-{self.n}"

    def key_for(self, uid: str) -> str | None:
        """The record key: the user id, as producers are told; now and then another string or
        none (the value decides, not the key)."""
        r = self.rng.random()
        if r < 0.9 or self.live:  # live: no forwarding, so the arrival order is the file's
            return uid
        if r < 0.95:
            return None
        return self.rng.choice(HOSTILE_KEYS)

    def ok_event(self, uid: str, ts_ms: int, **extra: object) -> dict[str, object]:
        d: dict[str, object] = {
            "event_id": self.eid(),
            "type": "page_view",
            "user_id": uid,
            "ts": iso(ts_ms),
            "session_id": f"s-{uid}",
        }
        d.update(extra)
        return d

    def ok_answer(self, uid: str, ts_ms: int, **extra: object) -> dict[str, object]:
        survey, lo, hi = self.rng.choice([("nps", 0, 10), ("csat", 1, 5), ("ces", 1, 7)])
        d: dict[str, object] = {
            "response_id": f"r-{self.seed}-{self.n}",
            "survey": survey,
            "score": self.rng.randint(lo, hi),
            "user_id": uid,
            "ts": iso(ts_ms),
        }
        d.update(extra)
        return d

    def jitter(self) -> int:
        """An event time a little before its record timestamp (within the lateness)."""
        return self.rts - self.rng.randrange(0, 10 * 60_000)

    def rec(
        self, topic: str, value: bytes | str | dict[str, object] | None, outcome: str, case: str,
        key: str | None = None, rts: int | None = None,
    ) -> Record:  # fmt: skip
        if isinstance(value, dict):
            value = json.dumps(value, ensure_ascii=self.rng.random() < 0.5)
        if isinstance(value, str):
            value = value.encode("utf-8")
        return Record(topic, key, value, self.rts if rts is None else rts, outcome, case)

    def accepted(self, topic: str, d: dict[str, object], case: str, **kw: object) -> Record:
        ident = str(d.get("event_id") if topic == PE else d.get("response_id"))
        self.recent.append((topic, str(d["user_id"]), ident))
        if len(self.recent) > 5000:
            del self.recent[:2500]
        key = kw.pop("key", self.key_for(str(d["user_id"])))
        return self.rec(topic, d, ACCEPTED, case, key=key, **kw)  # type: ignore[arg-type]

    # ---- accepted ------------------------------------------------------------------------------

    def valid_common(self) -> Record:
        uid = self.user()
        ts = self.jitter()
        r = self.rng.random()
        if r < 0.35:
            return self.accepted(PE, self.ok_event(uid, ts), "page_view")
        if r < 0.5:
            d = self.ok_event(uid, ts, type="feature_used", props={"feature": f"f{self.n % 7}"})
            return self.accepted(PE, d, "feature_used")
        if r < 0.6:
            amount = self.rng.choice([0, 0.0, 12.5, 10**6, 1e-300, 99])
            d = self.ok_event(
                uid, ts, type="purchase", props={"order_id": f"o-{self.n}", "amount": amount}
            )
            return self.accepted(PE, d, "purchase")
        if r < 0.7:
            d = self.ok_event(uid, ts, type="signup", account_id=f"acct-{self.n % 50}")
            return self.accepted(PE, d, "signup")
        if r < 0.8:
            d = self.ok_event(uid, ts, type="custom_thing_1", ts=ts)  # epoch ms integer
            return self.accepted(PE, d, "custom_epoch_ms")
        d = self.ok_answer(uid, ts, touchpoint=self.rng.choice(["support", "email", None]))
        return self.accepted(SA, d, "survey")

    def valid_borderline(self) -> Record:
        uid = self.user()
        ts = self.jitter()
        c = self.rng.randrange(16)
        if c == 0:  # control characters in ids, escaped as JSON requires: ordinary text
            d = self.ok_event(uid, ts, event_id=f"e\u0000\u0001\t\n\u001f-{self.n}",
                              session_id="s\u007f\u0085\u2028")  # fmt: skip
            return self.accepted(PE, d, "ids_with_control_chars")
        if c == 1:  # ids of exactly 128 code points, 4 bytes each
            d = self.ok_event(uid, ts, event_id=(f"{self.n:x}-" + "😀" * 128)[:128])
            return self.accepted(PE, d, "id_128_code_points")
        if c == 2:  # an escaped surrogate pair is one ordinary character
            eid = self.eid()
            text = json.dumps(self.ok_event(uid, ts, event_id=eid))
            text = text.replace(f'"{eid}"', f'"{eid}\\ud83d\\ude00"')
            self.recent.append((PE, uid, eid + "😀"))
            return self.rec(PE, text, ACCEPTED, "escaped_surrogate_pair", key=uid)
        if c == 3:  # a repeated member name: the last one wins (a bad one first)
            eid = self.eid()
            text = (f'{{"event_id": 5, "type": "Not A Type", "user_id": null, "ts": 1.5, '
                    f'"event_id": "{eid}", "type": "page_view", "user_id": "{uid}", '
                    f'"ts": "{iso(ts)}", "session_id": "s"}}')  # fmt: skip
            self.recent.append((PE, uid, eid))
            return self.rec(PE, text, ACCEPTED, "duplicate_keys_last_valid", key=uid)
        if c == 4:  # huge and odd numbers in ignored fields are still JSON
            n = self.rng.choice(["1e400", "-1e400", "1" + "0" * 5000, "-0", "1E+2", "0.0e-999"])
            d = self.ok_event(uid, ts)
            text = json.dumps(d)[:-1] + f', "extra": {n}, "more": [{n}, {{"x": {n}}}]}}'
            self.recent.append((PE, uid, str(d["event_id"])))
            return self.rec(PE, text, ACCEPTED, "huge_numbers_ignored", key=uid)
        if c == 5:  # 64 levels exactly (the record object is level 1), and a number of
            # thousands of digits that the bracket-heavy value takes to the strict parser
            d = self.ok_event(uid, ts)
            n = self.rng.choice(["1", "-" + "9" * 5000, "1" + "0" * 4400 + "e-4400"])
            text = json.dumps(d)[:-1] + f', "n": {n}, "deep": ' + "[" * 63 + "]" * 63 + "}"
            self.recent.append((PE, uid, str(d["event_id"])))
            return self.rec(PE, text, ACCEPTED, "depth_64", key=uid)
        if c == 6:  # exactly 65,536 bytes
            d = self.ok_event(uid, ts, pad="")
            base = len(json.dumps(d).encode())
            d["pad"] = "x" * (LIMIT - base)
            text = json.dumps(d)
            assert len(text.encode()) == LIMIT
            return self._exact(PE, text, d)
        if c == 7:  # the boundaries of time: exactly 1 h ahead, exactly the lateness behind
            off = self.rng.choice([HOUR_MS, -LATENESS_MS])
            d = self.ok_event(uid, self.rts + off)
            return self.accepted(PE, d, "time_boundary")
        if c == 8:  # lowercase separator and zone, numeric offsets, 9 fraction digits
            local = EPOCH + timedelta(milliseconds=ts, hours=5, minutes=30)
            t = self.rng.choice([
                iso(ts, "t", "z"),
                local.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts % 1000:03d}000000+05:30",
                (EPOCH + timedelta(milliseconds=ts)).strftime("%Y-%m-%dT%H:%M:%S") + f".{ts % 1000:03d}-00:00",
            ])  # fmt: skip
            return self.accepted(PE, self.ok_event(uid, ts, ts=t), "rfc3339_variants")
        if c == 9:  # null optional fields are absent; unknown fields are ignored
            d = self.ok_event(uid, ts, account_id=None, props=None, comment=[1, {"a": None}],
                              survey="nps", score="x")  # fmt: skip
            return self.accepted(PE, d, "nulls_and_unknown_fields")
        if c == 10:  # the years 0001 and 9999 with record timestamps there too
            if self.live or self.rng.random() < 0.5:
                rts = YEAR_9999_END_MS - self.rng.randrange(1000)
                d = self.ok_event(uid, rts, ts="9999-12-31T23:59:59.999Z")
            else:
                rts = YEAR_1_MS + self.rng.randrange(1000)
                d = self.ok_event(uid, rts, ts="0001-01-01T00:00:00Z")
            return self.accepted(PE, d, "years_1_and_9999", rts=rts)
        if c == 11:  # a purchase of -0.0: not below zero
            d = self.ok_event(
                uid, ts, type="purchase", props={"order_id": f"o-{self.n}", "amount": -0.0}
            )
            return self.accepted(PE, d, "amount_minus_zero")
        if c == 12:  # every social action and a click without props
            a = self.rng.choice(["like", "share", "comment", "mention", "save"])
            d = self.ok_event(uid, ts, type=self.rng.choice(["social_interaction", "click"]),
                              props={"action": a})  # fmt: skip
            return self.accepted(PE, d, "social_click")
        if c == 13:  # type of 64 characters, ids of 1 character
            d = self.ok_event(uid, ts, type="a" + "b" * 63, session_id="s")
            return self.accepted(PE, d, "type_64_chars")
        if c == 14:  # whitespace around the value and inside it
            d = self.ok_event(uid, ts)
            text = " \t\r\n" + json.dumps(d, indent=3) + "\n\n "
            self.recent.append((PE, uid, str(d["event_id"])))
            return self.rec(PE, text, ACCEPTED, "whitespace", key=uid)
        d = self.ok_answer(uid, ts, comment="\u0000" * 10 + "x" * 1000, account_id="a" * 128)
        return self.accepted(SA, d, "survey_borderline")

    def _exact(self, topic: str, text: str, d: dict[str, object]) -> Record:
        self.recent.append((topic, str(d["user_id"]), str(d["event_id"])))
        return self.rec(topic, text, ACCEPTED, "exactly_64KiB", key=str(d["user_id"]))

    # ---- duplicates ----------------------------------------------------------------------------

    def duplicate(self) -> Record:
        """A valid record repeating an accepted (user, id): the first one wins."""
        if not self.recent:
            return self.valid_common()
        topic, uid, ident = self.rng.choice(self.recent)
        ts = self.jitter()
        if topic == PE:
            d = self.ok_event(
                uid, ts, event_id=ident, type=self.rng.choice(["click", "signup", "page_view"])
            )
        else:
            d = self.ok_answer(uid, ts, response_id=ident)
        return self.rec(topic, d, DUPLICATE, "duplicate", key=self.key_for(uid))

    def same_id_other_user(self) -> Record:
        """An accepted id under another user: identities are scoped to the user."""
        if not self.recent:
            return self.valid_common()
        topic, _uid, ident = self.rng.choice(self.recent)
        other = f"x-{self.n}"
        ts = self.jitter()
        if topic == PE:
            d = self.ok_event(other, ts, event_id=ident)
        else:
            d = self.ok_answer(other, ts, response_id=ident)
        return self.accepted(topic, d, "same_id_other_user")

    def invalid_copy_of_accepted(self) -> Record:
        """A copy of an accepted id that fails validation: rejected, never a duplicate."""
        if not self.recent:
            return self.valid_common()
        topic, uid, ident = self.rng.choice(self.recent)
        if topic == PE:
            d = self.ok_event(uid, self.rts + HOUR_MS + 1, event_id=ident)
            return self.rec(PE, d, FUTURE, "invalid_copy_future", key=uid)
        d = self.ok_answer(uid, self.jitter(), response_id=ident, score=99)
        return self.rec(SA, d, SCHEMA, "invalid_copy_schema", key=uid)

    # ---- too_large -----------------------------------------------------------------------------

    def too_large(self) -> Record:
        uid = self.user()
        c = self.rng.randrange(4)
        if c == 0:  # a valid event of 65,537 bytes
            d = self.ok_event(uid, self.jitter(), pad="")
            base = len(json.dumps(d).encode())
            d["pad"] = "y" * (LIMIT + 1 - base)
            text = json.dumps(d)
            assert len(text.encode()) == LIMIT + 1
            return self.rec(PE, text, TOO_LARGE, "64KiB_plus_1", key=uid)
        if c == 1:  # too large and not JSON either: the size is checked first
            return self.rec(PE, b"\xff{" * (LIMIT // 2 + 1), TOO_LARGE, "large_garbage", key=uid)
        if c == 2:  # large in bytes, not in characters (3 bytes each)
            return self.rec(
                SA, ("\u20ac" * (LIMIT // 3 + 1)).encode(), TOO_LARGE, "large_multibyte", key=uid
            )
        return self.rec(PE, self._huge, TOO_LARGE, "huge", key=uid)

    # ---- bad_json ------------------------------------------------------------------------------

    BAD_UTF8 = (
        b"\xff", b"\xc3", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
        b"\x80", b"\xfe\xfe", b"\xf0\x9f\x98",
    )  # fmt: skip

    def bad_json(self) -> Record:
        uid = self.user()
        ts = self.jitter()
        good = json.dumps(self.ok_event(uid, ts))
        c = self.rng.randrange(20)
        topic = self.rng.choice([PE, SA])
        if c < 4:  # broken UTF-8 inside a string, or anywhere
            bad = self.rng.choice(self.BAD_UTF8)
            raw = good.encode()
            i = raw.index(b'"user_id"') + 12 if c < 2 else self.rng.randrange(len(raw))
            return self.rec(topic, raw[:i] + bad + raw[i:], BAD_JSON, "broken_utf8", key=uid)
        if c == 4:  # NaN / Infinity are not JSON, wherever they are
            tok = self.rng.choice(["NaN", "Infinity", "-Infinity"])
            text = good[:-1] + f', "extra": {tok}}}'
            return self.rec(topic, text, BAD_JSON, "nan_infinity", key=uid)
        if c == 5:
            tok = self.rng.choice(["NaN", "Infinity", "-Infinity"])
            d = self.ok_event(uid, ts, type="purchase", props={"order_id": "o", "amount": 0})
            text = json.dumps(d).replace('"amount": 0', f'"amount": {tok}')
            return self.rec(PE, text, BAD_JSON, "nan_amount", key=uid)
        if c == 6:  # a byte-order mark
            return self.rec(topic, "\ufeff" + good, BAD_JSON, "bom", key=uid)
        if c == 7:  # more than 64 levels, in an ignored field, or absurdly deep
            # 30,000 levels: 60 kB, under the size limit
            depth = self.rng.choice([64, 65, 65, 1000, 1000, 30_000])
            text = good[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
            return self.rec(topic, text, BAD_JSON, "too_deep", key=uid)
        if c == 8:  # an escaped lone surrogate (decision 5)
            text = good.replace(f'"{uid}"', f'"{uid}\\udc00"', 1)
            return self.rec(topic, text, BAD_JSON, "escaped_lone_surrogate", key=uid)
        if c == 9:  # a raw control character inside a string
            ctl = chr(self.rng.randrange(0, 32))
            text = good.replace(f'"{uid}"', f'"{uid}{ctl}"', 1)
            return self.rec(topic, text, BAD_JSON, "raw_control_char", key=uid)
        if c == 10:  # empty and blank values, a tombstone
            v = self.rng.choice([b"", b"   ", b"\n", None])
            return Record(topic, uid, v, self.rts, BAD_JSON, "empty_or_tombstone")
        if c == 11:  # truncated
            return self.rec(
                topic, good[: self.rng.randrange(1, len(good) - 1)], BAD_JSON, "truncated", key=uid
            )
        if c == 12:  # trailing garbage, two values
            text = good + self.rng.choice([" x", "{}", ",", " " + good])
            return self.rec(topic, text, BAD_JSON, "trailing_garbage", key=uid)
        if c == 13:  # JavaScript, not JSON
            text = self.rng.choice([
                good.replace('"', "'"), good[:-1] + ",}", "/* c */" + good,
                good.replace(f'"{uid}"', "undefined", 1),
            ])  # fmt: skip
            return self.rec(topic, text, BAD_JSON, "javascript", key=uid)
        if c == 14:  # numbers JSON does not allow
            n = self.rng.choice(["0x10", "01", "+1", ".5", "1.", "1e", "--1", "1_000"])
            return self.rec(topic, good[:-1] + f', "n": {n}}}', BAD_JSON, "bad_number", key=uid)
        if c == 15:  # bad escapes
            e = self.rng.choice(["\\x41", "\\u12", "\\uZZZZ", "\\'", "\\"])
            text = good.replace(f'"{uid}"', f'"{uid}{e}"', 1)
            return self.rec(topic, text, BAD_JSON, "bad_escape", key=uid)
        if c == 16:  # binary garbage (never valid UTF-8: starts with a continuation byte)
            raw = bytes([0x80]) + self.rng.randbytes(self.rng.randrange(0, 200))
            return self.rec(topic, raw, BAD_JSON, "binary", key=uid)
        if c == 17:  # unquoted keys, missing colons or commas
            text = self.rng.choice([good.replace('"user_id"', "user_id"), good.replace(":", "", 1),
                                    good.replace(",", "", 1)])  # fmt: skip
            return self.rec(topic, text, BAD_JSON, "broken_syntax", key=uid)
        if c == 18:  # UTF-16 and UTF-32 encodings of a valid event
            enc = self.rng.choice(["utf-16", "utf-16-le", "utf-32"])
            return self.rec(topic, good.encode(enc), BAD_JSON, "utf16", key=uid)
        # unbalanced brackets
        text = self.rng.choice(["{", "}", "[", "]", "{]", "[}", '{"a": [}', '{"a": {]}'])
        return self.rec(topic, text, BAD_JSON, "unbalanced", key=uid)

    # ---- schema --------------------------------------------------------------------------------

    def schema(self) -> Record:
        uid = self.user()
        ts = self.jitter()
        c = self.rng.randrange(24)
        ev = self.ok_event
        if c == 0:  # valid JSON that is no object
            v = self.rng.choice(["[]", "1", '"s"', "null", "true", "[{}]", "-0", "1e400"])
            return self.rec(self.rng.choice([PE, SA]), v, SCHEMA, "not_object", key=uid)
        if c == 1:  # a required field missing
            d = ev(uid, ts)
            del d[self.rng.choice(["event_id", "type", "user_id", "ts"])]
            return self.rec(PE, d, SCHEMA, "missing_field", key=uid)
        if c == 2:  # a required field null
            d = ev(uid, ts)
            d[self.rng.choice(["event_id", "type", "user_id", "ts"])] = None
            return self.rec(PE, d, SCHEMA, "null_required", key=uid)
        if c == 3:  # a field of the wrong JSON type
            f = self.rng.choice(["event_id", "type", "user_id", "account_id", "session_id"])
            d = ev(uid, ts, **{f: self.rng.choice([1, True, [], {}, 1.5])})
            return self.rec(PE, d, SCHEMA, "wrong_type", key=uid)
        if c == 4:  # ids out of range: empty, 129 code points
            f = self.rng.choice(["event_id", "user_id", "account_id", "session_id"])
            d = ev(uid, ts, **{f: self.rng.choice(["", "é" * 129, "😀" * 129])})
            return self.rec(PE, d, SCHEMA, "id_length", key=uid)
        if c == 5:  # the type pattern
            t = self.rng.choice(["Page", "1abc", "a-b", "", "a" * 65, "page view", "pägé", "_x"])
            return self.rec(PE, ev(uid, ts, type=t), SCHEMA, "type_pattern", key=uid)
        if c == 6:  # ts: not an integer nor an RFC 3339 string
            t = self.rng.choice([1.5, str(ts), True, [ts], {"ms": ts}, float(ts)])
            return self.rec(PE, ev(uid, ts, ts=t), SCHEMA, "ts_type", key=uid)
        if c == 7:  # ts: strings that are not RFC 3339 instants
            t = self.rng.choice([
                iso(ts, " "), iso(ts)[:-1], iso(ts)[:10], "2026-11-20T10:00:60Z", "2026-02-30T10:00:00Z",
                "2025-02-29T00:00:00Z", "2026-11-20T24:00:00Z", "2026-13-01T00:00:00Z",
                "0000-12-31T23:59:59Z", "10000-01-01T00:00:00Z", "2026-11-20T10:00:00+24:00",
                "2026-11-20T10:00:00.Z", "2026-11-20T10:00Z", "２０２６-11-20T10:00:00Z",
                "2026-11-20T10:00:00+05", "yesterday", "",
            ])  # fmt: skip
            return self.rec(PE, ev(uid, ts, ts=t), SCHEMA, "ts_string", key=uid)
        if c == 8:  # ts: epoch milliseconds outside the years 0001-9999, or absurd
            t = self.rng.choice([str(YEAR_1_MS - 1), str(YEAR_9999_END_MS + 1), "1" + "0" * 30,
                                 "-1" + "0" * 30, "1" + "0" * 5000])  # fmt: skip
            text = json.dumps(ev(uid, ts, ts=0)).replace('"ts": 0', f'"ts": {t}')
            return self.rec(PE, text, SCHEMA, "ts_range", key=uid)
        if c == 9:  # ts whose offset takes it out of the years 0001-9999
            t = self.rng.choice(["0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01"])
            return self.rec(PE, ev(uid, ts, ts=t), SCHEMA, "ts_offset_range", key=uid)
        if c == 10:  # typed events without their props
            t = self.rng.choice(["onboarding_step", "feature_used", "purchase", "return",
                                 "ticket_opened", "ticket_resolved", "social_interaction"])  # fmt: skip
            p = self.rng.choice([None, {}, {"other": 1}])
            return self.rec(PE, ev(uid, ts, type=t, props=p), SCHEMA, "props_missing", key=uid)
        if c == 11:  # props of the wrong type
            p = self.rng.choice([[], "x", 1, True])
            return self.rec(PE, ev(uid, ts, props=p), SCHEMA, "props_type", key=uid)
        if c == 12:  # props names out of range
            v = self.rng.choice(["", "n" * 129, 5, None, ["f"]])
            return self.rec(
                PE,
                ev(uid, ts, type="feature_used", props={"feature": v}),
                SCHEMA,
                "props_name",
                key=uid,
            )
        if c == 13:  # purchase amounts
            a = self.rng.choice(
                ["-1", "-1e-300", '"5"', "true", "null", "1e400", "-1e400", "1" + "0" * 400]
            )
            d = ev(uid, ts, type="purchase", props={"order_id": "o", "amount": 0})
            text = json.dumps(d).replace('"amount": 0', f'"amount": {a}')
            return self.rec(PE, text, SCHEMA, "amount", key=uid)
        if c == 14:  # social actions
            a = self.rng.choice(["poke", "Like", "", None, 1])
            return self.rec(
                PE,
                ev(uid, ts, type="social_interaction", props={"action": a}),
                SCHEMA,
                "social",
                key=uid,
            )
        if c == 15:  # session events without a session
            t = self.rng.choice(["page_view", "session_start", "session_end"])
            d = ev(uid, ts, type=t)
            del d["session_id"]
            return self.rec(PE, d, SCHEMA, "no_session", key=uid)
        if c == 16:  # placement of the wrong type
            d = ev(uid, ts, type="click", props={"placement": self.rng.choice([1, "", "p" * 129])})
            return self.rec(PE, d, SCHEMA, "placement", key=uid)
        if c == 17:  # survey scores
            s, score = self.rng.choice([("nps", 11), ("nps", -1), ("csat", 0), ("csat", 6),
                                        ("ces", 8), ("nps", 9.0), ("nps", "9"), ("nps", True), ("nps", None)])  # fmt: skip
            d = self.ok_answer(uid, ts, survey=s, score=score)
            return self.rec(SA, d, SCHEMA, "score", key=uid)
        if c == 18:  # survey names
            d = self.ok_answer(uid, ts, survey=self.rng.choice(["NPS", "nps ", "", "other", 1]))
            return self.rec(SA, d, SCHEMA, "survey_name", key=uid)
        if c == 19:  # survey ids and touchpoint
            f = self.rng.choice(["response_id", "user_id", "account_id", "touchpoint"])
            d = self.ok_answer(uid, ts, **{f: self.rng.choice(["", "t" * 129, 7])})
            return self.rec(SA, d, SCHEMA, "survey_ids", key=uid)
        if c == 20:  # a comment of the wrong type
            d = self.ok_answer(uid, ts, comment=self.rng.choice([1, [], {}, True]))
            return self.rec(SA, d, SCHEMA, "comment_type", key=uid)
        if c == 21:  # a repeated member name whose last value is bad
            text = json.dumps(ev(uid, ts))[:-1] + ', "user_id": 42}'
            return self.rec(PE, text, SCHEMA, "duplicate_keys_last_bad", key=uid)
        if c == 22:  # schema beats time: a bad record in the far future is schema
            d = ev(uid, YEAR_9999_END_MS, ts="9999-12-31T23:59:59Z")
            del d["event_id"]
            return self.rec(PE, d, SCHEMA, "schema_before_future", key=uid)
        # control characters in ids are text, but an id must still be 1-128 code points
        d = ev(uid, ts, event_id="\u0000" * 129)
        return self.rec(PE, d, SCHEMA, "control_chars_too_long", key=uid)

    # ---- future / too_late ---------------------------------------------------------------------

    def future(self) -> Record:
        uid = self.user()
        c = self.rng.randrange(4)
        if c == 0:  # one millisecond past the hour
            return self.rec(
                PE, self.ok_event(uid, self.rts + HOUR_MS + 1), FUTURE, "future_1ms", key=uid
            )
        if c == 1:  # the year 9999
            d = self.ok_event(uid, 0, ts="9999-12-31T23:59:59.999Z")
            return self.rec(PE, d, FUTURE, "future_9999", key=uid)
        if c == 2:  # one nanosecond past the hour
            t = iso(self.rts + HOUR_MS)[:-1] + "000001Z"
            return self.rec(SA, self.ok_answer(uid, 0, ts=t), FUTURE, "future_1ns", key=uid)
        return self.rec(
            PE,
            self.ok_event(uid, self.rts + 86_400_000, ts=self.rts + 86_400_000),
            FUTURE,
            "future_day",
            key=uid,
        )

    def too_late(self) -> Record:
        uid = self.user()
        c = self.rng.randrange(4)
        if c == 0:
            return self.rec(
                PE, self.ok_event(uid, self.rts - LATENESS_MS - 1), TOO_LATE, "late_1ms", key=uid
            )
        if c == 1:  # the year 0001
            d = self.ok_event(uid, 0, ts="0001-01-01T00:00:00Z")
            return self.rec(PE, d, TOO_LATE, "late_year_1", key=uid)
        if c == 2:  # epoch 0, written as -0
            text = json.dumps(self.ok_event(uid, 0, ts=0)).replace('"ts": 0', '"ts": -0')
            return self.rec(PE, text, TOO_LATE, "late_epoch_minus_zero", key=uid)
        t = iso(self.rts - LATENESS_MS - 1)[:-1] + "999999Z"  # 1 ns before the bound
        return self.rec(SA, self.ok_answer(uid, 0, ts=t), TOO_LATE, "late_1ns", key=uid)
