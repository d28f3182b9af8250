"""The core's stored encoding (`LiveUsers.export_encoded` / `LiveAccounts.export_encoded`,
native/src/codec.rs) against streams/codec.py, its reference: for every entity, the bytes
written by the core are those of `codec.encode_stored_user(export)` (a user without its event
ids, stored under keys of their own) / `codec.encode_account(export)`, byte for byte, and decode
back to the exported slots.

- States built by the compiled live partitions from the simulate mix (bad records, misrouted
  keys, duplicates, redeliveries, over-precise timestamps up to 18 fractional digits: Fractions,
  hostile records, several time zones, expiry sweeps), checked as they grow.
- Hand-made states loaded into the core with the values the fast paths do not meet: instants
  beyond 64 bits of ns (extension type 1, inside a Fraction too), negative instants, sizes
  across every msgpack length boundary, floats (-0.0, inf, nan), unknown topics in offs, empty
  milestones dicts.

The compiled module must be importable in CI (CI=1): there the tests fail without it; elsewhere
they are skipped with the reason.
"""

from __future__ import annotations

import random
from collections import deque
from fractions import Fraction
from typing import Any

import pytest

from streams import codec
from streams.config import Config
from streams.live import IDLE_SOURCE_SECONDS, Batch
from streams.state import _ACCOUNT_SLOTS, _USER_SLOTS, AccountState, UserState
from streams.timeutil import DAY, MS, Instant
from tests.unit.test_native_live import _native, micro_batches, norm, sim_records


def _slots(s: Any, names: tuple[str, ...]) -> list[Any]:
    return [norm(getattr(s, n)) for n in names]


_STORED_SLOTS = tuple(n for n in _USER_SLOTS if n != "ids")


def check_users(part: Any) -> int:
    """Every user of a native partition: core bytes == Python bytes, and they round-trip."""
    view = part.users
    exported = view.export()
    got = view.export_encoded()
    assert sorted(got) == sorted(exported)
    some = list(exported)[: max(1, len(exported) // 3)]
    assert view.export_encoded(some) == {k: got[k] for k in some}
    for uid, u in exported.items():
        want = codec.encode_stored_user(u)
        assert got[uid] is not None, uid
        assert got[uid] == want, (uid, got[uid].hex(), want.hex())
        back = codec.decode_user(got[uid])
        assert _slots(back, _STORED_SLOTS) == _slots(u, _STORED_SLOTS), uid
        assert back.ids == {}, uid
    # and the core reads its bytes back (a restart's load) into the same states, unless the
    # core cannot hold them when loaded from Python either
    read = read_back("users", part.config, dict(got))
    if read is None:
        assert hands_over("users", part.config, dict(got))
    else:
        assert {k: _slots(v, _STORED_SLOTS) for k, v in read.items()} == {
            k: _slots(v, _STORED_SLOTS) for k, v in exported.items()
        }
    return len(exported)


def hands_over(kind: str, cfg: Config, encoded: dict[str, bytes]) -> bool:
    """The states decoded in Python are more than the core holds (it hands them to Python)."""
    from streams import native_live as nl

    if kind == "users":
        users = {k: codec.decode_user(v) for k, v in encoded.items()}
        return bool(nl.NativeLiveUserPartition(cfg, 0, 1, 1, users).handed_over)
    accts = {k: codec.decode_account(v) for k, v in encoded.items()}
    return bool(nl.NativeLiveAccountPartition(cfg, 0, accts).handed_over)


def read_back(kind: str, cfg: Config, encoded: dict[str, bytes]) -> dict[str, Any] | None:
    """The states the core reads from stored bytes itself (`from_encoded`, a restart's load),
    or None when it leaves them to Python."""
    from streams import native_live as nl

    part: Any
    if kind == "users":
        part = nl.NativeLiveUserPartition.from_encoded(cfg, 0, 1, 1, encoded)
        return None if part is None else dict(part.users.export())
    part = nl.NativeLiveAccountPartition.from_encoded(cfg, 0, encoded)
    return None if part is None else dict(part.accounts.export())


def read_in_python(kind: str, cfg: Config, encoded: dict[str, bytes]) -> dict[str, Any] | None:
    """The states of the Python path (decode, then load), or None when it refuses the bytes."""
    from streams import native_live as nl

    try:
        if kind == "users":
            users = {k: codec.decode_user(v) for k, v in encoded.items()}
            part: Any = nl.NativeLiveUserPartition(cfg, 0, 1, 1, users)
            return dict(part.users.export()) if not part.handed_over else dict(users)
        accts = {k: codec.decode_account(v) for k, v in encoded.items()}
        part = nl.NativeLiveAccountPartition(cfg, 0, accts)
        return dict(part.accounts.export()) if not part.handed_over else dict(accts)
    except Exception:
        return None


def check_accounts(part: Any) -> int:
    view = part.accounts
    exported = view.export()
    got = view.export_encoded()
    assert sorted(got) == sorted(exported)
    for c, a in exported.items():
        want = codec.encode_account(a)
        assert got[c] is not None, c
        assert got[c] == want, (c, got[c].hex(), want.hex())
        back = codec.decode_account(got[c])
        assert _slots(back, _ACCOUNT_SLOTS) == _slots(a, _ACCOUNT_SLOTS), c
    read = read_back("accounts", part.config, dict(got))
    if read is None:
        assert hands_over("accounts", part.config, dict(got))
    elif not _has_nan(exported):
        assert {k: _slots(v, _ACCOUNT_SLOTS) for k, v in read.items()} == {
            k: _slots(v, _ACCOUNT_SLOTS) for k, v in exported.items()
        }
    return len(exported)


def _has_nan(accounts: dict[str, Any]) -> bool:
    return any(f != f for a in accounts.values() for _, f in (a.orders or []))


@pytest.mark.parametrize(
    ("seed", "timezone", "partitions", "n", "days"),
    [
        (11, "UTC", 3, 2500, 12),
        (12, "America/New_York", 2, 2500, 40),  # DST, expiry over 40 days
        (13, "Asia/Kolkata", 1, 1500, 3),
    ],
)
def test_the_core_writes_the_codec_bytes_of_simulated_states(
    seed: int, timezone: str, partitions: int, n: int, days: float
) -> None:
    nl = _native()
    cfg = Config.from_mapping({"timezone": timezone})
    recs = sim_records(seed, n, users=60, days=days, partitions=partitions, hostile=n // 20)
    rng = random.Random(seed)
    us = [nl.NativeLiveUserPartition(cfg, p, partitions, partitions) for p in range(partitions)]
    acs = [nl.NativeLiveAccountPartition(cfg, p) for p in range(partitions)]
    queues: dict[int, deque[Batch]] = {p: deque() for p in range(partitions)}
    for b in micro_batches(recs, rng, 40):
        queues[b.partition % partitions].append(b)
    msg = [0] * partitions
    amsg = [0] * partitions
    wall = 0.0
    seen = {"users": 0, "accounts": 0, "fractions": 0, "sweeps": 0}
    step = 0
    while any(queues.values()):
        p = rng.choice([q for q in range(partitions) if queues[q]])
        wall += IDLE_SOURCE_SECONDS + 1 if rng.random() < 0.1 else rng.random() * 60
        us[p].wall = wall
        o = us[p].apply(queues[p].popleft(), msg[p])
        msg[p] += 1
        seen["sweeps"] += o.swept
        for q, bs in o.forwards.items():
            queues[q].extend(bs)
        for q, fs in o.facts.items():
            acs[q].apply(fs, amsg[q])
            amsg[q] += 1
        step += 1
        if step % 25 == 0:
            for part in us:
                check_users(part)
            for apart in acs:
                check_accounts(apart)
    for part in us:
        assert not part.handed_over
        seen["users"] += check_users(part)
        seen["fractions"] += sum(
            "Fraction" in repr(_slots(u, _USER_SLOTS)) for u in part.users.export().values()
        )
    for apart in acs:
        assert not apart.handed_over
        seen["accounts"] += check_accounts(apart)
    assert seen["users"] > 20 and seen["accounts"] > 10
    assert seen["fractions"] > 0  # over-precise instants made it into the stored states
    if days >= 5:
        assert seen["sweeps"] > 0


def _edge_user(i: int) -> UserState:
    big = 2**70  # ns: beyond 64 bits
    u = UserState()
    u.offs = {("product-events", 0): 0, ("survey-answers", 3): 2**40, ("other-topic", -1): 127}
    u.ids = {f"e{k}": START + k for k in range(i)}  # fixmap, map16
    u.days = {-5: -1, 20000: START, 2**40: START + 1}
    u.last = big
    # -10**28 ns is the core's initial fold point, which it exports as Python's (-10**30)
    u.lastp = [Fraction(2**65 * 10**9 + 1, 10**9), -big, Fraction(-7, 4), -(2**63), 2**64 - 1]
    u.lastp += [2**63, -(10**28)]
    u.signup = Fraction(START * 10**9 + 123, 10**9)
    u.ms = {} if i % 2 else {"activated": START, "step:x" * 10: [START, Fraction(1, 2)], "v": []}
    u.features = {"f" * 40: [None, [START]], "g": [START, None], "é" * 200: [-1, []]}
    u.answers = [(START, 1, -3, None), (Fraction(1, 8), 0, 10, "t" * 300)]
    u.sessions = {"s": [START, None, None, -(2**40), Fraction(5, 4)]}
    u.orders = {"o" * 70000: START}
    u.facts = [(START + k, k % 5) for k in range(i * 3)]  # fixarray, array16
    u.resp = {"r": 0}
    u.tickets = {"t": [START, None], "u": [None, None]}
    u.returns = None
    return u


START = 1_793_491_200_000_000_000


def test_edge_values_of_loaded_states() -> None:
    nl = _native()
    cfg = Config()
    users: dict[str, UserState] = {f"u{i}": _edge_user(i) for i in (0, 1, 15, 16, 17)}
    sparse = UserState()  # ids only: the trailing Nones left out
    users["sparse"] = sparse
    only_lastp = UserState()
    only_lastp.lastp = [START]
    users["lastp"] = only_lastp
    part = nl.NativeLiveUserPartition(cfg, 0, 1, 1, users)
    assert not part.handed_over
    assert check_users(part) == len(users)
    assert len(part.users.export_encoded(["u1", "nobody", "sparse", "u1"])) == 2
    assert (
        part.users.export_encoded(["sparse"])["sparse"]
        == bytes([codec.FORMAT_VERSION]) + b"\x92\xc0\x80"
    )

    accounts: dict[str, AccountState] = {}
    for i in (0, 1, 16):
        a = AccountState(Fraction(START * 10**9 - 1, 10**9) if i else -(2**70))
        a.offs = {("product-events", 1, 2): 3, ("x" * 33, 0, 0): 2**63 - 1} if i else None
        orders: list[tuple[Instant, float]] = [(START, f) for f in (0.0, -0.0, 1.5, -1e300)]
        a.orders = [*orders, (-1, float("inf"))] * (i + 1)
        a.lastp = [START] if i == 16 else None
        a.nps = (START, -10) if i else None
        a.csatp = [(START + k, -k) for k in range(i)] or None
        a.sub = (2**70, 1) if i == 1 else None
        accounts[f"c{i}"] = a
    accounts["bare"] = AccountState(START)
    apart = nl.NativeLiveAccountPartition(cfg, 0, accounts)
    assert not apart.handed_over
    assert check_accounts(apart) == len(accounts)
    assert apart.accounts.export_encoded(["bare"])["bare"] == bytes(
        [codec.FORMAT_VERSION]
    ) + b"\x91" + codec._pack(START)
    # nan: the same bits through both paths (equal slots cannot be asserted: nan != nan)
    nan = AccountState(START)
    nan.orders = [(START, float("nan"))]
    npart = nl.NativeLiveAccountPartition(cfg, 0, {"n": nan})
    assert npart.accounts.export_encoded()["n"] == codec.encode_account(npart.accounts["n"])


def test_fill_encodes_the_gaps_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    nl = _native()
    part = nl.NativeLiveUserPartition(Config(), 0, 1, 1, {"a": _edge_user(2), "b": UserState()})
    view = part.users
    want = {k: codec.encode_stored_user(u) for k, u in view.export().items()}
    assert view.export_encoded(fill=codec.encode_stored_user) == want

    class Core:  # a core that leaves "a" to Python
        def __init__(self, core: Any) -> None:
            self.core = core

        def export_encoded(self, keys: Any = None) -> dict[str, bytes | None]:
            d = self.core.export_encoded(keys)
            d["a"] = None
            return d

        def export(self, keys: Any = None) -> Any:
            return self.core.export(keys)

    gappy = nl._View(Core(view._core))
    assert gappy.export_encoded()["a"] is None
    assert gappy.export_encoded(fill=codec.encode_stored_user) == want


def test_an_epochs_entity_writes_from_the_core_are_those_of_python() -> None:
    """agents/epoch.py `entity_writes`: the core's writes of an epoch's changed entities equal
    the Python path's over the same states (a plain dict of the exported states): the ids in
    code point order (non-ASCII and astral ids included), the ones gone (never held, or with a
    lone surrogate, which the core never holds) deleted after the puts."""
    from agents.epoch import entity_writes

    nl = _native()
    cfg = Config()
    users: dict[str, UserState] = {f"u{i}": _edge_user(i) for i in (0, 1, 16)}
    for uid in ("é", "z", "日本", "\U0001f600", "Z", ""):
        users[uid] = _edge_user(2)
    part = nl.NativeLiveUserPartition(cfg, 0, 1, 1, users)
    keys = {*users, "nobody", "\ud800x", "a\U0001f600", "ÿ"}
    want = entity_writes(part.users.export(), keys, codec.encode_stored_user)
    got = entity_writes(part.users, keys, codec.encode_stored_user)
    assert got == want
    assert [k for k, v in got if v is None] == [
        b"\x01" + k.encode("utf-8", "surrogatepass")
        for k in sorted(("nobody", "\ud800x", "a\U0001f600", "ÿ"))
    ]
    assert entity_writes(part.users, [], codec.encode_stored_user) == []

    accounts = {c: AccountState(START + i) for i, c in enumerate(("c1", "ç", "c0"))}
    apart = nl.NativeLiveAccountPartition(cfg, 0, accounts)
    ckeys = ["c1", "gone", "ç", "c0"]
    want = entity_writes(apart.accounts.export(), ckeys, codec.encode_account)
    assert entity_writes(apart.accounts, ckeys, codec.encode_account) == want
    assert [k for k, _ in want] == [b"\x01c0", b"\x01c1", "\x01ç".encode(), b"\x01gone"]


def test_entity_writes_fill_what_the_core_leaves_to_python() -> None:
    from agents.epoch import entity_writes

    nl = _native()
    states = {"a": _edge_user(2), "b": UserState(), "c": _edge_user(3)}
    view = nl.NativeLiveUserPartition(Config(), 0, 1, 1, states).users
    want = entity_writes(view.export(), ["c", "a", "b", "x"], codec.encode_stored_user)

    class Core:  # a core that leaves "a" and "c" to Python
        def __init__(self, core: Any) -> None:
            self.core = core

        def entity_writes(self, keys: Any) -> Any:
            writes, gaps = self.core.entity_writes(keys)
            assert gaps == []
            for i, (k, _) in enumerate(writes):
                if k in (b"\x01a", b"\x01c"):
                    writes[i] = (k, None)
                    gaps.append((i, k[1:].decode()))
            return writes, gaps

        def export(self, keys: Any = None) -> Any:
            return self.core.export(keys)

    gappy = nl._View(Core(view._core))
    assert entity_writes(gappy, ["c", "a", "b", "x"], codec.encode_stored_user) == want
    assert want[-1] == (b"\x01x", None)


def test_the_core_states_the_codec_format_version() -> None:
    from streams import native

    _native()
    assert native._native.CODEC_FORMAT_VERSION == codec.FORMAT_VERSION
    assert native.check_contract() == []

    class Fake:
        pass

    fake = Fake()
    for name in dir(native._native):
        if name.isupper():
            setattr(fake, name, getattr(native._native, name))
    fake.CODEC_FORMAT_VERSION = codec.FORMAT_VERSION + 1  # type: ignore[attr-defined]
    problems = native.contract_problems(fake)
    assert len(problems) == 1 and problems[0].startswith(
        f"CODEC_FORMAT_VERSION: {codec.FORMAT_VERSION + 1}"
    )


def test_every_day_key_stays_an_int() -> None:
    """`days` holds int keys: msgpack ints, read back as ints."""
    nl = _native()
    u = UserState()
    u.days = {19000 + k: START + k * DAY for k in range(3)}
    u.last = START + 2 * DAY + MS
    part = nl.NativeLiveUserPartition(Config(), 0, 1, 1, {"d": u})
    b = part.users.export_encoded()["d"]
    assert b is not None and codec.decode_user(b).days == u.days


def _mutations(b: bytes, rng: random.Random) -> list[bytes]:
    """Bytes near `b`: truncated, a byte changed (to a random one, or to a nil, a bool, a
    float, an extension header), a byte dropped or repeated."""
    out = [b[:i] for i in sorted(rng.sample(range(len(b)), min(6, len(b))))]
    for _ in range(24):
        i = rng.randrange(len(b))
        c = rng.choice([rng.randrange(256), 0xC0, 0xC2, 0xC3, 0xCB, 0xD4, 0xD8, 0xC7, 0x01])
        out.append(b[:i] + bytes([c]) + b[i + 1 :])
        out.append(b[:i] + b[i + 1 :])
        out.append(b[:i] + b[i : i + 1] + b[i:])
    return out


@pytest.mark.parametrize("kind", ["users", "accounts"])
def test_the_core_reads_stored_bytes_as_python_does_or_leaves_them_to_it(kind: str) -> None:
    """Differential, on bytes near valid ones: whatever the core reads itself is what the
    Python path (decode, then load) gives; bytes that the Python path refuses, the core never
    takes."""
    nl = _native()
    cfg = Config()
    rng = random.Random(7)
    if kind == "users":
        states: dict[str, Any] = {f"u{i}": _edge_user(i) for i in (0, 1, 3, 16)}
        for u in states.values():  # less the core's initial fold point, which it cannot load
            u.lastp = [x for x in u.lastp if x != -(10**28)]
        ordinary = UserState()
        ordinary.offs = {("product-events", 0): 5}
        ordinary.ids = {"e1": START}
        ordinary.days = {20000: START}
        ordinary.last = START
        ordinary.signup = Fraction(START * 10**9 + 1, 10**9)
        ordinary.answers = [(START, 0, 4, "web")]
        ordinary.sessions = {"s": [START, START + 5, None, None, START]}
        ordinary.facts = [(START, 1)]
        states["ordinary"] = ordinary
        encoded = {k: codec.encode_user(u) for k, u in states.items()}
    else:
        a = AccountState(START)
        a.offs = {("product-events", 1, 2): 3}
        a.days = {20000: START}
        a.nps = (START, 9)
        a.orders = [(START, 1.5)]
        a.csatp = [(START, 4)]
        encoded = {"c": codec.encode_account(a), "bare": codec.encode_account(AccountState(1))}
    names = _USER_SLOTS if kind == "users" else _ACCOUNT_SLOTS
    taken = refused = 0
    for k, b in encoded.items():
        # the bytes as written: the core reads every one of them itself
        mine, ref = read_back(kind, cfg, {k: b}), read_in_python(kind, cfg, {k: b})
        assert mine is not None and ref is not None, k
        assert _slots(mine[k], names) == _slots(ref[k], names), k
        for m in _mutations(b, rng):
            one = {k: m}
            mine = read_back(kind, cfg, one)
            ref = read_in_python(kind, cfg, one)
            if mine is None:
                continue
            assert ref is not None, (k, m.hex())
            assert _slots(mine[k], names) == _slots(ref[k], names), (k, m.hex())
            taken += 1
        refused += read_in_python(kind, cfg, {k: b[:-1]}) is None
    assert nl is not None and taken > 10 and refused > 0


def test_lengths_in_the_bytes_never_reserve_what_is_not_there() -> None:
    """A stored value whose array or map header claims billions of items (a corrupt or hostile
    changelog record) is left to Python at once, which refuses it, rather than making the core
    reserve memory for them; so are maps kept as vectors beyond 1,024 entries."""
    _native()
    cfg = Config()
    v = bytes([codec.FORMAT_VERSION])
    big_array = v + b"\xdd\xff\xff\xff\xff"  # the slots: array32 of 2^32 - 1
    big_ids = v + b"\x92\xc0\xdf\x7f\xff\xff\xff"  # offs nil, ids: map32 of 2^31 - 1
    for b in (big_array, big_ids):
        assert read_back("users", cfg, {"u": b}) is None
        assert read_in_python("users", cfg, {"u": b}) is None
    u = UserState()
    u.ids = {"e": START}
    u.days = {d: START + d for d in range(1100)}  # more than the core scans for duplicates
    b = codec.encode_user(u)
    assert read_back("users", cfg, {"u": b}) is None
    ref = read_in_python("users", cfg, {"u": b})
    assert ref is not None and len(ref["u"].days) == 1100
