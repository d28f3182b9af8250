"""The live worker: a Faust app whose stages run the engine (streams/) on micro-batches.

Stages (docs/architecture.md), one module each:
1. intake (agents/intake.py): raw input topics -> `<app>-batches`, one message per micro-batch;
2. users (agents/users.py, Faust agent on `<app>-batches`, table `users`): the engine, dead
   letters, forwards, account facts, churn signals;
3. accounts (agents/accounts.py, Faust agent on `<app>-account-facts`, table `accounts`).
State changes are persisted per epoch (agents/epoch.py); /snapshot is gathered by
agents/gather.py. In memory each worker keeps the entity states of the partitions it owns
(loaded from the tables' local stores when partitions are assigned); snapshots and /metrics
read them.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer

from agents import faust_fetch
from agents.accounts import AccountsStage, load_account_partition
from agents.coverage import RecentForwards
from agents.delays import DelayHistogram
from agents.epoch import (
    EpochCommitter,
    Stored,
    Write,
    read_partition,
    send_as_batches,
    store_of,
)
from agents.exits import EXIT_CONFIG, EXIT_FAILURE
from agents.forget import Tombstones
from agents.intake import Intake
from agents.internal import (
    INTERNAL_CONFIGS,
    INTERNAL_MAX_MESSAGE,
    Names,
)
from agents.membership import member_ids, remember
from agents.outage import REACH
from agents.settings import Settings
from agents.users import UsersStage, load_user_partition
from streams.codec import UnknownFormatVersion, decode_id_key, encode_batch, encode_facts
from streams.codec import encode_batches as py_encode_batches
from streams.errors import ConfigError
from streams.live import Batch, LiveAccountPartition, LiveUserPartition, owner_of
from streams.native_live import encode_batches as native_encode_batches
from streams.native_live import partition_classes
from streams.native_live import unavailable_reason as native_unavailable
from streams.records import PRODUCT_EVENTS, SURVEY_ANSWERS
from streams.timeutil import Instant, format_instant, parse_as_of

__all__ = ["Worker"]

log = logging.getLogger("engagement.worker")

# Faust makes a stream wait, before each event, until its producer buffer holds at most
# `max_messages` (100) messages, flushing them one event-loop turn at a time (faust/transport/
# producer.py, "producer buffer full"). The stages send through the producer directly; this
# bound only matters for what Faust itself sends.
PRODUCER_BUFFER_MAX_MESSAGES = 20_000

DORMANT_CHECK_SECONDS = 30.0

# Faust's stream buffer: the messages delivered to an agent and not yet processed (Faust's
# default 4,096). Faust stops fetching a partition when the buffer holds 80% of this, and
# fetches again under 40%. A users micro-batch holds up to 2,000 records (~400 KB), so a worker
# that fell behind its intake buffered up to ~1.6 GB of them (1,481 MiB resident at 11,648
# users in the bench's half-rate phase, session 10); 256 are 512,000 records, far more than
# the agent applies between two fetches.
STREAM_BUFFER_EVENTS = 256

# The cyclic collector's thresholds while the worker runs (Python's default: 700, 10, 10). A
# live worker allocates and frees a few objects per record (tuples, bytes, futures), almost all
# freed by reference counting; at the default its young collections ran ~70 times a second and
# its full ones every 2 s, over everything allocated since the state was frozen (~5% of the
# main thread at 20,000 records/s, py-spy --native). Set by `engagement worker` (a process-wide
# setting: not by the class, which the tests also build).
GC_THRESHOLDS = (50_000, 20, 20)


class Worker:
    """The Faust app, its stages, and the in-memory state of the partitions this process owns."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        s = settings
        self.P = s.partitions
        self.names = Names.of(s)
        faust_fetch.install()  # Faust's consumer holds a fetch 100 ms, not 1.5 s
        self.app = faust.App(
            # the topic prefix isolates the consumer groups and table changelogs too
            self.names.app_group,
            broker=f"kafka://{s.bootstrap}",
            store=s.store,
            datadir=s.data_dir,
            topic_partitions=self.P,
            topic_replication_factor=s.topics.replication_factor,
            key_serializer="raw",
            value_serializer="raw",
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=1.0,
            # A SIGKILLed member holds its partitions until its session expires: 10 s, not
            # Faust's 60 s (heartbeats come from Faust's consumer thread, never blocked by the
            # agents; docs/operations.md, "Faults we test").
            broker_session_timeout=10.0,
            broker_heartbeat_interval=1.0,
            table_standby_replicas=0,
            producer_max_request_size=INTERNAL_MAX_MESSAGE,
            producer_linger_ms=20,
            producer_max_batch_size=1024 * 1024,
            consumer_max_fetch_size=INTERNAL_MAX_MESSAGE,
            stream_buffer_maxsize=STREAM_BUFFER_EVENTS,
            web_host=s.web_host,
            web_bind=s.web_host,
            web_port=s.web_port,
            web_in_thread=False,
            **s.kafka_security.faust_settings(),
        )
        from faust.transport.producer import ProducerBuffer

        ProducerBuffer.max_messages = PRODUCER_BUFFER_MAX_MESSAGES
        internal_cfg = dict(INTERNAL_CONFIGS)
        self.batches_topic = self.app.topic(
            self.names.batches,
            partitions=self.P,
            internal=True,
            config=internal_cfg,
            key_type=bytes,
            value_type=bytes,
        )
        self.facts_topic = self.app.topic(
            self.names.account_facts,
            partitions=self.P,
            internal=True,
            config=internal_cfg,
            key_type=bytes,
            value_type=bytes,
        )
        self.users_table = self.app.Table(
            "users",
            partitions=self.P,
            key_type=bytes,
            value_type=bytes,
            options=dict(s.rocksdb_options),
        )
        self.accounts_table = self.app.Table(
            "accounts",
            partitions=self.P,
            key_type=bytes,
            value_type=bytes,
            options=dict(s.rocksdb_options),
        )
        # the engine of the partitions: the compiled core's twins when usable
        try:
            self.partition_classes = partition_classes(s.engine)
        except RuntimeError as exc:  # ENGAGEMENT_ENGINE=native without a usable core
            raise ConfigError(f"ENGAGEMENT_ENGINE=native: {exc}") from None
        self.encode_batches: Callable[[str, int, list[Any]], list[bytes]] = py_encode_batches
        # said once logging is set up (when the app starts)
        if self.partition_classes[0] is not LiveUserPartition:
            self.encode_batches = native_encode_batches
            self.engine_note = (logging.INFO, "engine: the compiled core (engagement_native)")
        elif s.engine == "python":
            self.engine_note = (logging.INFO, "engine: Python (ENGAGEMENT_ENGINE=python)")
        else:
            self.engine_note = (
                logging.WARNING,
                "engine: Python, since the compiled core is not usable "
                f"({native_unavailable()}); same results, slower. Build it with `make install` "
                "(it needs cargo)",
            )
        self.user_parts: dict[int, LiveUserPartition] = {}
        self.acct_parts: dict[int, LiveAccountPartition] = {}
        self.input_names = {
            s.topic(PRODUCT_EVENTS): PRODUCT_EVENTS,
            s.topic(SURVEY_ANSWERS): SURVEY_ANSWERS,
        }
        self.stats = {
            "batches": 0, "records": 0, "intake_records": 0, "sweeps": 0, "started": time.time()
        }  # fmt: skip
        self.delays = DelayHistogram()
        self.redis: Any = None
        # customers whose health must be re-published (agents/health.py drains it)
        self.health_pending: dict[int, set[str]] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        # forgotten users and customers per partition (agents/forget.py)
        self.user_tombs: dict[int, Tombstones] = {}
        self.recent_forwards: dict[int, tuple[Any, RecentForwards]] = {}
        self.acct_tombs: dict[int, Tombstones] = {}
        self.health_pub: Any = None
        self._closer: asyncio.Future[None] | None = None
        self._closer_stop = False
        self.unpersisted: list[str] = []  # epochs that failed while stopping (agents/outage.py)
        interval = s.commit_interval_ms / 1000

        def send_changelog(topic: str, p: int, writes: list[Write]) -> Awaitable[int]:
            # aiokafka's producer, under Faust's
            return send_as_batches(cast(Any, self.app.producer)._producer, topic, p, writes)

        self.intake = Intake(self)
        self.users = UsersStage(
            self,
            EpochCommitter(
                "users",
                self.names.changelog("users"),
                send_changelog,
                lambda: store_of(self.users_table),
                interval,
                self._epoch_failed,
            ),
        )
        self.accounts = AccountsStage(
            self,
            EpochCommitter(
                "accounts",
                self.names.changelog("accounts"),
                send_changelog,
                lambda: store_of(self.accounts_table),
                interval,
                self._epoch_failed,
            ),
        )
        self._register()

    # ---- clock -----------------------------------------------------------------------------

    def now(self) -> Instant:
        return self.s.clock if self.s.clock is not None else time.time_ns()

    # ---- wiring ----------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        app.agent(self.batches_topic, name="users")(self.users.agent)
        app.agent(self.facts_topic, name="accounts")(self.accounts.agent)
        app.task(self.intake.run)
        app.task(self._start_epoch_closer)
        app.timer(interval=1.0)(self._heartbeat)
        app.timer(interval=DORMANT_CHECK_SECONDS)(self._dormant)
        app.timer(interval=5.0)(self._check_gaps)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_rebalance_complete.connect(self._on_rebalance_complete)  # type: ignore[arg-type]
        app.on_before_shutdown.connect(self._on_before_shutdown)  # type: ignore[arg-type]
        from agents import views

        views.register(self)
        from agents import health, heap

        self.health_pub = health.register(self)
        self.heap = heap.register(app, self.s.heap_trim_seconds)

    @property
    def intake_consumer(self) -> AIOKafkaConsumer | None:
        return self.intake.consumer

    # ---- epochs ----------------------------------------------------------------------------

    async def _start_epoch_closer(self) -> None:
        """Close due epochs every half interval, from a task of our own: Faust waits for every
        delivered message to be acknowledged when it stops its consumer (at shutdown, before
        our shutdown hook runs, and on a revoke), after it has stopped its own timers."""
        log.log(*self.engine_note)
        self._closer = asyncio.ensure_future(self._epoch_closer())

    async def _epoch_closer(self) -> None:
        period = self.s.commit_interval_ms / 2000
        while not self._closer_stop:
            await asyncio.sleep(period)
            try:
                await self._close_epochs()
            except Exception:  # never let the closer die: unacknowledged input blocks Faust
                log.exception("closing epochs failed")

    async def _close_epochs(self) -> None:
        """Close the epochs whose interval has passed (those of idle partitions included)."""
        for stage in (self.users, self.accounts):
            for p in list(stage.epochs.open):
                if stage.epochs.due(p):
                    async with self.lock((stage.epochs.stage, p)):
                        stage.close(p)

    async def flush(self) -> None:
        """Close every open epoch and wait for every commit: on revoke and at shutdown."""
        for stage in (self.users, self.accounts):
            for p in list(stage.epochs.open):
                async with self.lock((stage.epochs.stage, p)):
                    stage.close(p)
        for stage in (self.users, self.accounts):
            await stage.epochs.wait()

    async def _epoch_failed(self, exc: BaseException) -> None:
        """An epoch could not be persisted: its input was not acknowledged, and the state in
        memory is ahead of what is durable. The worker stops (non-zero); the restarted worker
        (or another one) reads the epoch's input again, which the protocol makes exact."""
        if self.app.should_stop:  # the producer stopped under a commit: read again later
            log.warning("shutdown: an epoch was not persisted; its input is read again")
            self.unpersisted.append(f"an epoch failed ({exc})")
            return
        log.critical("stopping: state could not be persisted (%s); restart the worker", exc)
        logging.shutdown()
        os._exit(EXIT_FAILURE)

    # ---- partition state -------------------------------------------------------------------

    def assigned(self) -> tuple[set[int], set[int]]:
        actives = self.app.assignor.assigned_actives()
        users = {tp.partition for tp in actives if tp.topic == self.names.batches}
        accts = {tp.partition for tp in actives if tp.topic == self.names.account_facts}
        return users, accts

    async def _on_revoked(self, sender: Any, *args: Any, **kw: Any) -> None:
        # Faust waited for our input messages to be acknowledged (every epoch with events has
        # committed); what is left are epochs without input (dormant marks): persist them too
        await self.flush()
        self.user_parts.clear()
        self.recent_forwards.clear()  # it holds the partition objects: let them go
        self.acct_parts.clear()
        for stage in (self.users, self.accounts):
            stage.epochs.open.clear()
            stage.epochs.failed.clear()

    async def _on_rebalance_complete(self, sender: Any, *args: Any, **kw: Any) -> None:
        users, accts = self.assigned()
        self._load(users, accts)

    def _load(self, users: set[int], accts: set[int]) -> None:
        # Loading creates and drops a few objects per stored entity: with the cyclic collector
        # on, its full collections over a growing heap took most of a large restart (decoding
        # 26 against 7 us per user, measured at 116k users); nothing loaded holds cycles.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._load_partitions(users, accts)
        except UnknownFormatVersion as exc:
            # state of another release: nothing here can read it, and nothing may overwrite it
            log.critical("stopping: %s", exc)
            logging.shutdown()
            os._exit(EXIT_CONFIG)
        finally:
            if collecting:
                gc.enable()
            # what stays (the Python engine's states) is never garbage: keep it out of the
            # collector's generations, so that later collections do not walk it again
            gc.freeze()

    def _load_partitions(self, users: set[int], accts: set[int]) -> None:
        limit = self.now() - int(self.s.config.fold_margin_seconds * 1_000_000_000)
        for p in sorted(users - set(self.user_parts)):
            stored = self._read_partition(self.users_table, p)
            part, tombs = load_user_partition(
                self.s.config, p, self.P, stored, limit, self.partition_classes[0]
            )
            self._set_tombs(self.user_tombs, p, tombs)
            self.user_parts[p] = part
            log.info("loaded user partition %d (%d users)", p, len(part.users))
        for p in sorted(accts - set(self.acct_parts)):
            stored = self._read_partition(self.accounts_table, p)
            apart, atombs = load_account_partition(
                self.s.config, p, stored, limit, self.partition_classes[1]
            )
            self._set_tombs(self.acct_tombs, p, atombs)
            self.acct_parts[p] = apart
            log.info("loaded account partition %d (%d customers)", p, len(apart.accounts))

    @staticmethod
    def _set_tombs(tombs: dict[int, Tombstones], p: int, mine: Tombstones | None) -> None:
        if mine is None:
            tombs.pop(p, None)
        else:
            tombs[p] = mine

    def _read_partition(self, table: Any, p: int) -> Stored:
        """Partition p of a table, from its local store (restored from the changelog)."""
        store = table.data
        if hasattr(store, "_db_for_partition"):  # RocksDB: one database per partition
            import rocksdict

            # read once, front to back: not through the block cache (it would hold what it
            # read, up to its size, for nothing: the state lives in the engine from now on);
            # Faust's offset key is none of ours, so `read_partition` passes over it
            once = rocksdict.ReadOptions()
            once.fill_cache(False)  # type: ignore[call-arg]
            return read_partition(store._db_for_partition(p).items(read_opt=once), p)
        # the memory store holds every partition in one dict: keep this one's entities
        stored = read_partition(store.data.items(), p)
        stored.entities = {k: v for k, v in stored.entities.items() if owner_of(k, self.P) == p}
        stored.ids = [(k, v) for k, v in stored.ids if owner_of(decode_id_key(k)[0], self.P) == p]
        return stored

    def user_part(self, p: int) -> LiveUserPartition:
        part = self.user_parts.get(p)
        if part is None:
            self._load({p}, set())
            part = self.user_parts[p]
        return part

    def acct_part(self, p: int) -> LiveAccountPartition:
        part = self.acct_parts.get(p)
        if part is None:
            self._load(set(), {p})
            part = self.acct_parts[p]
        return part

    # ---- shutdown --------------------------------------------------------------------------

    async def _on_before_shutdown(self, sender: Any, *args: Any, **kw: Any) -> None:
        """Faust has stopped its consumer (after our epoch closer persisted what it had
        delivered). Stop the intake while the producer still runs (Faust stops it next), then
        persist what is left."""
        await self.intake.stop()
        try:
            await asyncio.wait_for(self.flush(), 20)
        except TimeoutError:
            log.warning("shutdown: epochs still committing; their input is read again")
        self._closer_stop = True
        if self._closer is not None:
            self._closer.cancel()

    # ---- skipped messages ------------------------------------------------------------------

    def lock(self, key: tuple[str, int]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def read_internal(self, topic: str, p: int, offsets: range) -> list[tuple[int, bytes]]:
        """Messages `offsets` of partition p of an internal topic, read directly from Kafka."""
        from aiokafka import TopicPartition

        tp = TopicPartition(topic, p)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.s.bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=INTERNAL_MAX_MESSAGE,
            fetch_max_bytes=INTERNAL_MAX_MESSAGE,
            **self.s.kafka_security.aiokafka_kwargs(),
        )
        await consumer.start()
        out: list[tuple[int, bytes]] = []
        try:
            consumer.assign([tp])
            consumer.seek(tp, offsets.start)
            deadline = time.monotonic() + 60
            while (not out or out[-1][0] < offsets.stop - 1) and time.monotonic() < deadline:
                data = await consumer.getmany(tp, timeout_ms=1000)
                for m in data.get(tp, []):
                    if m.offset in offsets and m.value is not None:
                        out.append((m.offset, m.value))
                    if m.offset >= offsets.stop - 1:
                        break
        finally:
            await consumer.stop()
        if not out or out[-1][0] < offsets.stop - 1:
            raise RuntimeError(f"could not re-read {tp} offsets {offsets} (the worker restarts)")
        return out

    async def _check_gaps(self) -> None:
        """Messages Faust committed past without delivering, with nothing after them: send the
        partition an empty message, whose arrival makes its agent re-read the gap (the agent
        applies a partition's messages in order)."""
        committed = getattr(self.app.consumer, "_committed_offset", {})
        stages: list[tuple[str, dict[int, Any], bytes]] = [
            (self.names.batches, self.user_parts, encode_batch(Batch("", 0, []))),
            (self.names.account_facts, self.acct_parts, encode_facts([])),
        ]
        for name, parts, nudge in stages:
            for p, part in list(parts.items()):
                for tp, off in list(committed.items()):
                    if tp.topic == name and tp.partition == p and off is not None:
                        last = off - 1  # the committed offset is the next one to read
                        if last > part.meta.event_offset:
                            log.warning(
                                "%s %d: committed past %d unapplied; nudging", name, p, last
                            )
                            await self.app.producer.send(name, None, nudge, p, None, None)

    # ---- timers ------------------------------------------------------------------------------

    async def _dormant(self) -> None:
        """Publish the dormant signals whose instant the worker's clock has passed. The mark
        is persisted with the partition's next epoch, after these signals are acknowledged
        (they are that epoch's side outputs), so a crash repeats some and loses none."""
        now = self.now()
        for p in list(self.user_parts):
            async with self.lock(("users", p)):
                part = self.user_parts.get(p)
                if part is None:  # revoked meanwhile
                    continue
                ep = self.users.epochs.epoch(p)
                for sig, customer, inst, _topic, _sp, _off in part.dormant_signals(now):
                    body = {"signal": sig, "customer": customer, "instant": format_instant(inst),
                            "source": None, "user_partition": p}  # fmt: skip
                    ep.side.append(
                        await self.app.producer.send(
                            self.names.churn_signals,
                            customer.encode(),
                            json.dumps(body).encode(),
                            None,
                            None,
                            None,
                        )
                    )
                ep.touched = True
            await asyncio.sleep(0)

    async def _heartbeat(self) -> None:
        """Register this worker (its URL) in Redis so any worker can gather a snapshot."""
        try:
            r = await self.get_redis()
            await r.set(self.names.registry_key(self.s.worker_id), self.s.web_url, ex=5)
        except Exception as exc:  # Redis away: /snapshot answers 503 until it is back
            log.warning("cannot register in Redis: %s", exc)
        if self.accounts.forget_redis:  # forgets whose Redis part failed: retried every second
            await self.accounts.forget_in_redis()
        # the member ids a restart removes from the groups (agents/membership.py)
        remember(self.s.data_dir, member_ids(self))

    async def get_redis(self) -> Any:
        if self.redis is None:
            import redis.asyncio as aioredis

            self.redis = aioredis.from_url(
                self.s.redis_url,
                socket_timeout=2,
                socket_connect_timeout=2,
                **self.s.redis_security.client_kwargs(self.s.redis_url),
            )
        return self.redis

    # ---- gathering ---------------------------------------------------------------------------

    def local_partials(self, t: Instant) -> dict[str, Any]:
        from agents.gather import local_partials

        return local_partials(self, t)

    async def gather(self, t: Instant) -> tuple[int, dict[str, Any]]:
        """/snapshot at T (agents/gather.py). The health publisher waits meanwhile: it holds the
        event loop for a chunk of customers at a time (agents/health.py), and after a backlog it
        has every customer to publish, so a snapshot whose awaits (Redis, the other workers)
        each let a chunk run would wait for several. Holding its lock, a snapshot waits for one
        chunk at most, and the publisher goes on after it (the lock is fair: snapshots asked
        back to back let a chunk run between each two)."""
        from agents.gather import gather

        if self.health_pub is None:
            return await gather(self, t)
        async with self.health_pub.lock:
            return await gather(self, t)

    def parse_as_of(self, raw: str | None) -> Instant:
        return self.now() if not raw else parse_as_of(raw)

    # ---- health and metrics ------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        try:
            users, accts = self.assigned()
        except Exception:
            users, accts = set(), set()
        loaded = users <= set(self.user_parts) and accts <= set(self.acct_parts)
        return {
            "live": True,
            "ready": bool(loaded and (users or accts)) and REACH.reachable,
            "kafka_reachable": REACH.reachable,
            "worker": self.s.worker_id,
            "user_partitions": sorted(users),
            "account_partitions": sorted(accts),
            "records_processed": self.stats["records"],
            "clock": format_instant(self.now()),
        }

    def metrics_text(self) -> tuple[bytes, str]:
        from agents.metrics import exposition

        return exposition(self.registry)

    @property
    def registry(self) -> Any:
        reg = getattr(self, "_registry", None)
        if reg is None:
            from agents.metrics import worker_registry

            reg = self._registry = worker_registry(self)
        return reg
