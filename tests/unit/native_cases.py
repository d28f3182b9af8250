"""Helpers of tests/unit/test_native.py: the differential runner (the pure-Python `Replayer`, the
reference, against `streams.native.NativeReplayer`), an exact comparison of their outcomes, a line
minimiser for failure messages, and the generators of the inputs (simulated streams, hand-made
envelopes and payloads, hostile records).

"The same result" is exact: the snapshot dicts are compared recursively with their types (an
int is not a float, -0.0 is not 0.0) and their key order (the CLI prints them), and the reject
sink must be called the same number of times, in the same order, with the same arguments (bytes
stay bytes).
"""

from __future__ import annotations

import io
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from streams.config import Config
from streams.replay import Replayer
from streams.simulate import SimConfig, Simulator, envelope_line
from streams.timeutil import MS, Instant, format_instant

try:  # the module under test may not exist yet, or its compiled part may be missing
    from streams import native as native_mod
except ImportError:  # pragma: no cover - the test module reports it
    native_mod = None  # type: ignore[assignment]


def native_available() -> bool:
    return native_mod is not None and bool(native_mod.available())


# ---------------------------------------------------------------------------------------------
# Running both engines
# ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    snapshot: dict[str, Any]
    rejects: list[tuple[Any, ...]]
    lines: int
    handed_over: bool | None = None  # native only
    engine: Any = None  # the Replayer / NativeReplayer, for the tests' own checks


def split_like_a_file(data: bytes) -> list[bytes]:
    """The lines `for raw in open(path, "rb")` yields (what `engagement replay` feeds)."""
    return list(io.BytesIO(data))


def run_python(
    lines: Iterable[bytes],
    config: Config,
    as_of: Instant,
    partitions: int = 1,
    sweep_every: int = 200_000,
) -> Outcome:
    calls: list[tuple[Any, ...]] = []
    r = Replayer(
        config, as_of, partitions, on_reject=lambda *a: calls.append(a), sweep_every=sweep_every
    )
    r.feed(lines)
    return Outcome(r.snapshot(), calls, r.lines, engine=r)


def make_native(
    config: Config,
    as_of: Instant,
    partitions: int,
    calls: list[tuple[Any, ...]],
    sweep_every: int = 200_000,
) -> Any:
    assert native_mod is not None
    return native_mod.NativeReplayer(
        config,
        as_of,
        partitions=partitions,
        on_reject=lambda *a: calls.append(a),
        sweep_every=sweep_every,
    )


def run_native(
    lines: Sequence[bytes],
    config: Config,
    as_of: Instant,
    partitions: int = 1,
    sweep_every: int = 200_000,
    mode: str = "feed",
    chunks: Sequence[int] | None = None,
) -> Outcome:
    """mode: "feed" (one feed() call), "iter" (feed() of an iterator), "line" (line() per line), "bytes" (the concatenated lines
    through feed_bytes in pieces of the sizes `chunks` cycles through, or whole, then finish())."""
    calls: list[tuple[Any, ...]] = []
    if type(as_of) is not int:
        # an over-precise as-of (a Fraction): NativeReplayer refuses it (ValueError) and
        # make_replayer("auto") gives the Python engine; the result must still be the same
        assert native_mod is not None
        r = native_mod.make_replayer(
            config, as_of, partitions, on_reject=lambda *a: calls.append(a), engine="auto"
        )
        r.sweep_every = sweep_every
        r.feed(lines if mode != "bytes" else split_like_a_file(b"".join(lines)))
        return Outcome(r.snapshot(), calls, r.lines, getattr(r, "handed_over", None), engine=r)
    n = make_native(config, as_of, partitions, calls, sweep_every)
    if mode == "feed":
        n.feed(lines)
    elif mode == "iter":  # a one-shot iterator, as a file object is
        n.feed(iter(lines))
    elif mode == "line":
        for raw in lines:
            n.line(raw)
    elif mode == "bytes":
        feed_in_chunks(n, b"".join(lines), chunks)
        n.finish()
    else:  # pragma: no cover
        raise ValueError(mode)
    return Outcome(n.snapshot(), calls, n.lines, bool(n.handed_over), engine=n)


def feed_in_chunks(n: Any, data: bytes, chunks: Sequence[int] | None) -> None:
    if not chunks:
        n.feed_bytes(data)
        return
    i = k = 0
    while i < len(data):
        size = chunks[k % len(chunks)]
        n.feed_bytes(data[i : i + size])
        i += size
        k += 1


# ---------------------------------------------------------------------------------------------
# Exact comparison
# ---------------------------------------------------------------------------------------------


def _short(v: Any, limit: int = 160) -> str:
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + f"...<{len(r)} chars>"


def exact_differences(py: Any, nat: Any, path: str = "") -> list[str]:
    """Where `nat` differs from `py` (empty: identical), types and dict key order included."""
    where = path or "<root>"
    if type(py) is not type(nat):
        return [
            f"{where}: python {_short(py)} ({type(py).__name__}), "
            f"native {_short(nat)} ({type(nat).__name__})"
        ]
    if isinstance(py, dict):
        out: list[str] = []
        for key in py:
            if key not in nat:
                out.append(f"{path}.{key}: missing in native (python {_short(py[key])})")
            else:
                out += exact_differences(py[key], nat[key], f"{path}.{key}")
        out += [f"{path}.{k}: unexpected in native ({_short(nat[k])})" for k in nat if k not in py]
        if not out and list(py) != list(nat):
            out.append(f"{where}: key order differs: python {list(py)}, native {list(nat)}")
        return out
    if isinstance(py, list | tuple):
        out = []
        if len(py) != len(nat):
            out.append(f"{where}: python has {len(py)} items, native {len(nat)}")
        for i, (a, b) in enumerate(zip(py, nat, strict=False)):
            out += exact_differences(a, b, f"{path}[{i}]")
            if len(out) > 20:
                break
        return out
    if isinstance(py, float):
        same = (math.isnan(py) and math.isnan(nat)) or (
            py == nat and math.copysign(1.0, py) == math.copysign(1.0, nat)
        )
        return [] if same else [f"{where}: python {py!r}, native {nat!r}"]
    return [] if py == nat else [f"{where}: python {_short(py)}, native {_short(nat)}"]


def outcome_differences(py: Outcome, nat: Outcome) -> list[str]:
    out = [f"snapshot{d}" for d in exact_differences(py.snapshot, nat.snapshot)]
    if py.rejects != nat.rejects or exact_differences(py.rejects, nat.rejects):
        out.append(
            f"reject sink: python called it {len(py.rejects)} times, native {len(nat.rejects)}"
        )
        for i, (a, b) in enumerate(zip(py.rejects, nat.rejects, strict=False)):
            d = exact_differences(a, b, f"call[{i}]")
            if d:
                out += d[:5]
                out.append(f"  python call[{i}] = {_short(a, 400)}")
                out.append(f"  native call[{i}] = {_short(b, 400)}")
                break
        else:
            longer = py.rejects if len(py.rejects) > len(nat.rejects) else nat.rejects
            who = "python" if longer is py.rejects else "native"
            k = min(len(py.rejects), len(nat.rejects))
            if k < len(longer):
                out.append(f"  first extra call ({who}) = {_short(longer[k], 400)}")
    if py.lines != nat.lines:
        out.append(f"lines: python {py.lines}, native {nat.lines}")
    return out


def minimize(
    lines: list[bytes], fails: Callable[[list[bytes]], bool], budget_s: float
) -> list[bytes]:
    """Greedy delta debugging over lines: a small sub-list that still fails."""
    deadline = time.monotonic() + budget_s
    chunk = max(1, len(lines) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i = 0
        changed = False
        while i < len(lines) and time.monotonic() < deadline:
            candidate = lines[:i] + lines[i + chunk :]
            try:
                bad = candidate != lines and fails(candidate)
            except Exception:  # a crash is a failure too
                bad = True
            if bad:
                lines = candidate
                changed = True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return lines


def compare(
    lines: Sequence[bytes],
    config: Config,
    as_of: Instant,
    partitions: int = 1,
    sweep_every: int = 200_000,
    mode: str = "feed",
    chunks: Sequence[int] | None = None,
    python_lines: Sequence[bytes] | None = None,
    shrink_budget_s: float = 20.0,
) -> tuple[Outcome, Outcome]:
    """Run both engines; raise AssertionError with the differences and a minimised input when
    they differ. `python_lines`: what the reference reads when it is not `lines` (bytes mode:
    the file's lines)."""
    lines = list(lines)
    ref_lines = list(lines) if python_lines is None else list(python_lines)
    py = run_python(ref_lines, config, as_of, partitions, sweep_every)
    try:
        nat = run_native(lines, config, as_of, partitions, sweep_every, mode, chunks)
    except Exception as exc:
        diffs = [f"native raised {type(exc).__name__}: {exc}"]
        nat = None
    else:
        diffs = outcome_differences(py, nat)
    if not diffs:
        assert nat is not None
        return py, nat

    def fails(sub: list[bytes]) -> bool:
        p = run_python(
            sub if python_lines is None else split_like_a_file(b"".join(sub)),
            config, as_of, partitions, sweep_every,
        )  # fmt: skip
        try:
            n = run_native(sub, config, as_of, partitions, sweep_every, mode, chunks)
        except Exception:
            return True
        return bool(outcome_differences(p, n))

    small = minimize(lines, fails, shrink_budget_s) if shrink_budget_s > 0 else lines
    msg = [
        f"native != python on {len(lines)} lines (config={config!r}, as_of={as_of!r} "
        f"[{format_instant(as_of)}], partitions={partitions}, sweep_every={sweep_every}, "
        f"mode={mode}, chunks={chunks}):",
        *diffs[:40],
        f"minimised to {len(small)} line(s):",
        *(f"  {_short(x, 600)}" for x in small[:40]),
    ]
    if len(small) <= 40:
        p = run_python(
            small if python_lines is None else split_like_a_file(b"".join(small)),
            config, as_of, partitions, sweep_every,
        )  # fmt: skip
        try:
            n = run_native(small, config, as_of, partitions, sweep_every, mode, chunks)
            msg += ["differences on those:", *outcome_differences(p, n)[:20]]
        except Exception as exc:
            msg.append(f"native raised {type(exc).__name__}: {exc}")
    raise AssertionError("\n".join(msg))


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z


def sim_lines(
    seed: int,
    records: int,
    days: float,
    users: int,
    bad_fraction: float = 0.05,
    start_ms: int = START_MS,
    kafka_partitions: int = 4,
) -> tuple[list[bytes], int]:
    """A simulated kcat-style file (streams.simulate, as bench/replay_bench.py makes it) and its
    last record timestamp (ms)."""
    duration_s = days * 86400
    cfg = SimConfig(
        start_ms=start_ms,
        duration_s=duration_s,
        users=users,
        rate=records / duration_s,
        seed=seed,
        partitions=kafka_partitions,
        bad_fraction=bad_fraction,
        max_records=records,
    )
    out: list[bytes] = []
    last = start_ms
    for rec in Simulator(cfg):
        out.append(envelope_line(rec))
        last = rec["ts"]
    return out, last


def env(
    topic: str | None = "product-events",
    payload: Any = None,
    ts: Any = 1_795_168_800_000,
    **extra: Any,
) -> dict[str, Any]:
    d: dict[str, Any] = {"topic": topic, "ts": ts}
    d.update(extra)
    d["payload"] = payload
    return d


def dumps_line(d: Any, ascii_: bool = True, eol: bytes = b"\n") -> bytes:
    """A JSON line. Without ensure_ascii, lone surrogates become raw bytes that are not UTF-8:
    the original bytes of a value decoded with surrogateescape, else their CESU-8 form."""
    text = json.dumps(d, ensure_ascii=ascii_)
    try:
        return text.encode("utf-8", "surrogateescape") + eol
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass") + eol


def hostile_lines(seed: int, n: int) -> tuple[list[bytes], int]:
    """tests/hostile.py's records as kcat envelope lines (as tests/unit/test_fuzz.py writes the
    ones it replays), with redelivered lines, other topics, CRLF and blank lines mixed in; and
    the as-of (ms) test_fuzz uses."""
    from tests.hostile import Hostile

    gen = Hostile(seed=seed)
    gen._huge = b'{"pad":"' + b"x" * 80_000 + b'"}'  # too large still; 1 MB lines cost time
    as_of_ms = gen.rts + (n + 1) * gen.step_ms + 60_000
    rnd = random.Random(seed)
    offsets = {"product-events": 0, "survey-answers": 0}
    out: list[bytes] = []
    last: bytes | None = None
    for rec in gen.records(n):
        v = rec.value
        payload = None if v is None else v.decode("utf-8", "surrogateescape")
        d: dict[str, Any] = {"topic": rec.topic}
        r = rnd.random()
        if r < 0.8:  # with an offset: redelivery applies
            offsets[rec.topic] += 1
            d["partition"] = 0
            d["offset"] = offsets[rec.topic]
        d["ts"] = rec.rts
        d["key"] = rec.key
        d["payload"] = payload
        # mostly \u escapes; sometimes raw UTF-8 (and raw invalid bytes where the value had them)
        line = dumps_line(
            d, ascii_=rnd.random() < 0.7, eol=b"\r\n" if rnd.random() < 0.03 else b"\n"
        )
        out.append(line)
        if last is not None and rnd.random() < 0.05:
            out.append(last)  # delivered again
        last = line
        r = rnd.random()
        if r < 0.02:
            out.append(dumps_line({"topic": "other", "ts": rec.rts, "payload": "{"}))
        elif r < 0.025:
            out.append(rnd.choice([b"\n", b"   \n", b"\r\n", b"\t \n"]))
    return out, as_of_ms


def iso_ms(ms_: int) -> str:
    return format_instant(ms_ * MS)
