"""/snapshot: every partition's contribution at T, gathered from every worker.

Each worker answers `/partials?as_of=T` with the merged partial of the partitions it owns and
has loaded (`local_partials`); the worker asked finds the others in the Redis registry, merges
their partials and finalizes the snapshot, or answers 503 naming the partitions nobody
answered for, or 422 when T is older than some partition's state still holds.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from agents.coverage import combine_coverage, coverage
from streams.engine import Partial, finalize, partial_from_json, partial_to_json
from streams.timeutil import Instant, format_instant

if TYPE_CHECKING:
    from agents.runtime import Runtime


def local_partials(w: Runtime, t: Instant, wire: bool = True) -> dict[str, Any]:
    """This worker's contribution at T: a merged partial and what it covers; the partial as
    JSON (`partial_to_json`) for `/partials`, or (`wire=False`, the worker gathering it
    itself) the `Partial` as it is, with no round trip through JSON.

    Only partitions whose state is loaded count: a partition still recovering after a
    rebalance is left out (the gathering worker then answers 503 naming it), and it is never
    loaded from here, since its table may be half-restored.

    `coverage` holds, per source topic-partition, what these partitions know of how far it is
    counted (`coverage`; `combine_coverage` joins every worker's); `fold` is the newest
    fold point of the partitions that have seen a
    record (None when none has: a partition without data answers for any T)."""
    assigned_u, assigned_a = w.assigned()
    users = assigned_u & set(w.user_parts)
    accts = assigned_a & set(w.acct_parts)
    total = Partial()
    folds: list[Instant] = []
    engines = [w.acct_parts[p].engine for p in sorted(accts)]
    # the customers' scans start first: on threads, they run while the users' partials are
    # computed here
    scans = _partials(engines, t)
    try:
        for p in sorted(users):
            part = w.user_parts[p]
            total.merge(part.engine.partial(t))
            if part.engine.watermark is not None:
                folds.append(part.engine.fold)
    finally:
        acct_partials = list(scans)  # every scan done before the event loop runs again
    for part_a, got in zip(engines, acct_partials, strict=True):
        total.merge(got)
        if part_a.watermark is not None:
            folds.append(part_a.fold)
    fold = max(folds) if folds else None
    return {
        "worker": w.s.worker_id,
        "user_partitions": sorted(users),
        "account_partitions": sorted(accts),
        "fold": None if fold is None else int(fold),
        "coverage": coverage(w, users, accts),
        "partial": partial_to_json(total) if wire else total,
    }


_POOL: ThreadPoolExecutor | None = None


def _partials(engines: list[Any], t: Instant) -> Iterator[Partial]:
    """Each engine's `partial(t)`, in order. The compiled core scans a partition's customers
    with the GIL released (`scans_without_gil`; their health decays with T, so no sum of them
    is kept current): with more than one, they scan on a thread each, on as many cores as the
    machine has, started before this returns; the iterator waits for each in turn. The caller
    consumes it before it returns to the event loop, so no message is applied to a partition
    while it is scanned."""
    global _POOL
    parallel = all(getattr(e, "scans_without_gil", False) for e in engines)
    if len(engines) < 2 or (os.cpu_count() or 1) < 2 or not parallel:
        return (e.partial(t) for e in engines)
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=os.cpu_count(), thread_name_prefix="partials")
    return _POOL.map(lambda e: e.partial(t), engines)  # submitted now, each result awaited


async def gather(w: Runtime, t: Instant) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /snapshot at T: every partition's partial, from every worker
    (`Worker.gather` holds the health publisher's lock meanwhile)."""
    import aiohttp

    try:
        r = await w.get_redis()
        keys = [k async for k in r.scan_iter(match=w.names.registry_key("*"))]
        urls = sorted({(await r.get(k) or b"").decode() for k in keys} - {""})
    except Exception as exc:
        return 503, {
            "error": f"Redis is unavailable ({type(exc).__name__}); the snapshot needs "
            "the worker registry there. Retry when Redis is back."
        }
    parts: list[dict[str, Any]] = []
    errors: list[str] = []
    as_of = format_instant(t)
    others = [u for u in urls if u != w.s.web_url]
    if not others:  # one worker: no HTTP client
        if w.s.web_url in urls:
            parts.append(local_partials(w, t, wire=False))
    else:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

            async def fetch(url: str) -> None:
                try:
                    async with session.get(f"{url}/partials", params={"as_of": as_of}) as resp:
                        if resp.status == 200:
                            parts.append(await resp.json())
                        else:
                            errors.append(f"{url}: HTTP {resp.status}")
                except Exception as exc:
                    errors.append(f"{url}: {type(exc).__name__}")

            asked = [asyncio.ensure_future(fetch(u)) for u in others]
            await asyncio.sleep(0)  # the requests start, then this worker's partials are computed
            if w.s.web_url in urls:
                parts.append(local_partials(w, t, wire=False))
            await asyncio.gather(*asked)
    total = Partial()
    seen_u: dict[int, int] = {}
    seen_a: dict[int, int] = {}
    sources: dict[str, dict[str, Any]] = {}
    fold: Instant | None = None
    for body in parts:
        for p in body["user_partitions"]:
            seen_u[p] = seen_u.get(p, 0) + 1
        for p in body["account_partitions"]:
            seen_a[p] = seen_a.get(p, 0) + 1
        got = body["partial"]
        total.merge(got if isinstance(got, Partial) else partial_from_json(got))
        for k, v in body["coverage"].items():
            src = sources.setdefault(k, {})
            if "counted" in v:
                src["counted"] = v["counted"]
            for part in ("forwarded", "applied", "pending"):
                src.setdefault(part, {}).update(v.get(part, {}))
        f = body.get("fold")
        if f is not None and (fold is None or f > fold):
            fold = f
    P = w.P
    missing_u = [p for p in range(P) if seen_u.get(p) != 1]
    missing_a = [p for p in range(P) if seen_a.get(p) != 1]
    if missing_u or missing_a:
        return 503, {
            "error": "not every partition answered exactly once (a rebalance or a worker down?); retry",
            "missing_user_partitions": missing_u,
            "missing_account_partitions": missing_a,
            "workers": urls,
            "worker_errors": errors,
        }
    if fold is not None and t < fold:
        return 422, {
            "error": f"as_of {as_of} is older than the state still holds; the oldest "
            f"instant answerable now is {format_instant(fold)}",
        }
    snap = finalize(total, t, w.s.config)
    snap["coverage"] = combine_coverage(sources)
    return 200, snap
