"""agents/facts.py: the users stage sends a partition's account facts once per epoch, one
message per account partition, in the order its micro-batches made them; a forget never
overtakes them; and /snapshot's coverage counts a record only once the facts it made are
acknowledged. The stages are the real ones, on tests/unit/test_epoch.py's simulated Kafka."""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Iterator
from typing import Any

import pytest

from agents.facts import FLUSH_FACTS, PendingFacts
from agents.forget import forget_message
from streams.codec import ForgetRequest, decode_facts_message, encode_batch
from streams.config import Config
from streams.live import LiveUserPartition
from tests.unit.test_epoch import CrashPlan, Event, Kafka, Process, _batches
from tests.unit.test_live import make_input, parts

__all__ = ["parts"]


@pytest.fixture(autouse=True)
def _collect_here() -> Iterator[None]:
    """The stages and the simulated process hold each other: free the compiled partitions
    in them on this thread (the core's user partitions may not be dropped on another, and a
    later test's threads would otherwise run the collection that drops them)."""
    yield
    gc.collect()


def _world(n: int) -> tuple[Kafka, list[Any]]:
    envs, _ = make_input(n, seed=13)
    kafka = Kafka(n)
    batches = [b for b in _batches(envs, n) if b.partition == 0][:12]
    for b in batches:
        kafka.logs[("users", 0)].append(encode_batch(b))
    return kafka, batches


def _made_facts(n: int, batches: list[Any]) -> dict[int, list[Any]]:
    """The facts the Python partition makes of the micro-batches, per account partition."""
    part = LiveUserPartition(Config(), 0, n, n)
    out: dict[int, list[Any]] = {}
    for off, b in enumerate(batches):
        for q, facts in part.apply(b, off).facts.items():
            out.setdefault(q, []).extend(facts)
    return out


def test_an_epochs_facts_go_out_when_it_closes_one_message_per_account_partition(
    parts: Any,
) -> None:
    n = 3
    kafka, batches = _world(n)
    want = _made_facts(n, batches)
    assert sum(map(len, want.values())) > 20 and len(want) > 1

    async def run() -> None:
        proc = Process(kafka, Config(), n, CrashPlan(random.Random(0), 0.0), parts)
        log = kafka.logs[("users", 0)]
        for off in range(len(log)):
            await proc.users.message(0, off, log[off], Event(kafka, ("users", 0), off))
        assert all(kafka.logs[("accounts", q)] == [] for q in range(n))  # still waiting
        await proc.users.close(0)
        await proc.users.epochs.wait()
        got = {q: [decode_facts_message(m) for m in kafka.logs[("accounts", q)]] for q in range(n)}
        assert {q: len(ms) for q, ms in got.items() if ms} == {q: 1 for q in want}
        assert {q: [tuple(f) for f in ms[0]] for q, ms in got.items() if ms} == want

    asyncio.run(run())


def test_a_forget_is_sent_after_the_facts_made_before_it(parts: Any) -> None:
    n = 3
    kafka, batches = _world(n)
    want = _made_facts(n, batches)
    user = next(f[0] for fs in want.values() for f in fs)  # a customer with facts (its user)
    kafka.logs[("users", 0)].append(forget_message(user, "req-1"))

    async def run() -> None:
        proc = Process(kafka, Config(), n, CrashPlan(random.Random(0), 0.0), parts)
        log = kafka.logs[("users", 0)]
        for off in range(len(log)):
            await proc.users.message(0, off, log[off], Event(kafka, ("users", 0), off))
        await proc.users.close(0)
        await proc.users.epochs.wait()

    asyncio.run(run())
    msgs = [decode_facts_message(m) for q in range(n) for m in kafka.logs[("accounts", q)]]
    forgets = [i for i, m in enumerate(msgs) if isinstance(m, ForgetRequest)]
    assert len(forgets) == 1
    q = next(q for q in range(n) for m in kafka.logs[("accounts", q)]
             if isinstance(decode_facts_message(m), ForgetRequest))  # fmt: skip
    in_q = [decode_facts_message(m) for m in kafka.logs[("accounts", q)]]
    # the customer's facts are in a message before its forget, none after
    at = next(i for i, m in enumerate(in_q) if isinstance(m, ForgetRequest))
    assert any(f[0] == user for m in in_q[:at] for f in m)
    assert not any(f[0] == user for m in in_q[at + 1 :] if isinstance(m, list) for f in m)


async def settle() -> None:
    for _ in range(5):  # the acknowledgements' callbacks run
        await asyncio.sleep(0)


def test_coverage_waits_for_the_facts_of_the_records_it_counts() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        pf = PendingFacts()
        owner = object()
        at = {("product-events", 0): 10}
        assert pf.offsets(0, at) == at  # nothing waiting: the partition's own offsets
        assert not pf.add(0, dict(at), {})  # a micro-batch without facts holds nothing
        assert pf.offsets(0, {("product-events", 0): 11}) == {("product-events", 0): 11}
        # a micro-batch up to 12 made facts: coverage stays at 11 until they are acknowledged
        assert not pf.add(0, {("product-events", 0): 11}, {1: [("c", 1)], 2: [("d", 1)]})  # type: ignore[list-item]
        assert pf.holds(0)
        assert pf.offsets(0, {("product-events", 0): 12}) == {("product-events", 0): 11}
        first = loop.create_future()
        assert pf.take(0) == {1: [("c", 1)], 2: [("d", 1)]}
        pf.sent(0, [first], {("product-events", 0): 12}, owner)
        # more facts (up to 15) while the first ones are on their way
        assert not pf.add(0, {("product-events", 0): 12}, {1: [("e", 1)]})  # type: ignore[list-item]
        assert pf.offsets(0, {("product-events", 0): 15}) == {("product-events", 0): 11}
        first.set_result(None)
        await settle()
        # the first facts are acknowledged: up to 12; the ones up to 15 still wait
        assert pf.offsets(0, {("product-events", 0): 15}) == {("product-events", 0): 12}
        second = loop.create_future()
        pf.take(0)
        pf.sent(0, [second], {("product-events", 0): 15}, owner)
        assert pf.offsets(0, {("product-events", 0): 16}) == {("product-events", 0): 12}
        second.set_result(None)
        await settle()
        assert pf.offsets(0, {("product-events", 0): 16}) == {("product-events", 0): 16}
        assert not pf.holds(0)
        # a failed send holds coverage back (the worker stops; its input is read again)
        pf.add(0, {("product-events", 0): 16}, {1: [("f", 1)]})  # type: ignore[list-item]
        third = loop.create_future()
        pf.take(0)
        pf.sent(0, [third], {("product-events", 0): 17}, owner)
        third.set_exception(RuntimeError("broker gone"))
        await settle()
        assert pf.offsets(0, {("product-events", 0): 17}) == {("product-events", 0): 16}
        # many facts waiting ask to be sent before the epoch's end
        assert pf.add(1, {}, {0: [("g", 1)] * FLUSH_FACTS})  # type: ignore[list-item]

    asyncio.run(run())
