"""How far each source partition is counted: the `coverage` of /snapshot.

A record of source partition `topic/sp` is counted by user partition sp (applied, rejected, or
forwarded to the partition that owns its user), and a forwarded one once its owner has applied
it. Coverage X means every record of the source partition up to offset X is counted, forwarded
ones included: `engagement snapshot --wait` and the bench's delay rows rely on it.

Each worker reports, for the partitions it owns (`coverage`): what each user partition counted
of its own source partitions, the last offset it forwarded to each other partition, the last
forwarded offset each partition applied, and the offsets it forwarded lately
(`RecentForwards`); the gathering worker joins them (`combine_coverage`).

Why the recent offsets: with only the last offset forwarded to q and the last one q applied,
a forward on its way holds the coverage back to the previous forward q applied, which may be
thousands of records earlier (a producer keying a few records to other partitions makes the
coverage jump back again and again). Knowing every forward after the one q applied, coverage
is exact up to just before the first one q has not applied yet.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.runtime import Runtime

# how many forwarded offsets a user partition keeps per (source topic, destination); older
# ones are forgotten and coverage falls back to the last one the destination applied
KEEP_FORWARDS = 64


class RecentForwards:
    """The offsets a user partition forwarded lately, per (source topic, destination
    partition), since it was loaded: every forward after `floor` is in `offsets` (ascending);
    of those at or before it nothing is known (forwarded before the load, or forgotten)."""

    def __init__(self, persisted: dict[tuple[str, int], int] | None = None) -> None:
        # the last forward of each destination the stored meta knows of (`Meta.fwd`)
        self.logs: dict[tuple[str, int], tuple[int, deque[int]]] = {
            key: (off, deque()) for key, off in (persisted or {}).items()
        }

    def note(self, topic: str, q: int, offsets: list[int]) -> None:
        """Records of source `topic` (this partition's own) forwarded to partition q."""
        floor, recent = self.logs.get((topic, q)) or (-1, deque())
        for off in offsets:
            last = recent[-1] if recent else floor
            if off <= last:
                continue  # forwarded again (a redelivered micro-batch): already known
            recent.append(off)
            if len(recent) > KEEP_FORWARDS:
                floor = recent.popleft()
        self.logs[(topic, q)] = (floor, recent)

    def after(self, topic: str, q: int, applied: int) -> tuple[int, list[int]]:
        """(a, the offsets forwarded to q after a): every forward after a is listed; a is
        `applied` (what q is known to have applied, -1 when not known here) or, when the
        forwards after that are not all known, the newest offset forgotten."""
        floor, recent = self.logs.get((topic, q)) or (-1, deque())
        a = max(floor, applied)
        return a, [off for off in recent if off > a]


def recent_forwards(w: Runtime, p: int) -> RecentForwards:
    """User partition p's log, new whenever the partition was (re)loaded."""
    part = w.user_parts[p]
    held = w.recent_forwards.get(p)
    if held is None or held[0] is not part:
        fwd = getattr(part.meta, "fwd", None) or {}
        held = w.recent_forwards[p] = (part, RecentForwards(dict(fwd)))
    return held[1]


def coverage(w: Runtime, users: set[int], accts: set[int]) -> dict[str, Any]:
    """What the partitions given know of how far each source partition is counted: per
    source topic-partition `topic/sp`, the last offset its own user partition counted
    (`counted`: every record up to it applied, rejected or forwarded), the last offset it
    forwarded to each other partition (`forwarded`), its forwards a destination may not have
    applied yet (`pending`: every forward after offset `after`; `after` is what the
    destination applied when this worker owns it too), and the last forwarded offset each
    other partition applied (`applied`)."""
    out: dict[str, Any] = {}
    for p in sorted(users):
        meta = w.user_parts[p].meta
        for (topic, sp), off in meta.offs.items():
            src = out.setdefault(f"{w.s.topic(topic)}/{sp}", {})
            if sp == p:
                src["counted"] = off
            else:
                src.setdefault("applied", {})[str(p)] = off
        fwd = getattr(meta, "fwd", None) or {}
        if not fwd:
            continue
        log = recent_forwards(w, p)
        for (topic, q), off in fwd.items():
            src = out.setdefault(f"{w.s.topic(topic)}/{p}", {})
            src.setdefault("forwarded", {})[str(q)] = off
            # what q applied of p's forwards, when this worker holds q (else the oldest
            # offsets kept: the gathering worker compares them with q's report)
            dest = w.user_parts.get(q) if q in users else None
            applied = dest.meta.offs.get((topic, p), -1) if dest is not None else -1
            after, todo = log.after(topic, q, applied)
            src.setdefault("pending", {})[str(q)] = {"after": after, "offsets": todo}
    for p in sorted(accts):
        # the last account-facts message applied: `engagement snapshot --wait` compares it
        # with the topic's end (facts are acknowledged before the records that made them)
        out[f"{w.names.account_facts}/{p}"] = {"counted": w.acct_parts[p].meta.event_offset}
    return out


def combine_coverage(sources: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Per source topic-partition, the offset up to which every record is counted: what its
    own user partition counted (applied, rejected or forwarded), but, while some of its
    forwards are on their way to a partition, no further than just before the first of them
    that partition has not applied (forwards arrive in order); when those forwards are not
    all known, no further than the last forward it applied."""
    out: dict[str, int] = {}
    for key, src in sources.items():
        cov = src.get("counted", -1)
        applied = src.get("applied", {})
        pending = src.get("pending", {})
        for q, last in src.get("forwarded", {}).items():
            got = applied.get(q, -1)
            if got >= last:
                continue
            known = pending.get(q)
            if known is not None and known["after"] <= got:
                first = min((o for o in known["offsets"] if o > got), default=None)
                cov = min(cov, got if first is None else first - 1)
            else:
                cov = min(cov, got)
        out[key] = cov
    return out
