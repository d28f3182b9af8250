"""When the broker is gone: backoff, quiet logs, reachability, and stopping when told.

Every process of the project that talks to Kafka (the worker, `engagement load`,
`engagement simulate`) installs these pieces (docs/operations.md, "When the broker is gone"):

- **Reconnect backoff** (`install_backoff`). aiokafka 0.14 has no `reconnect_backoff_ms`: a
  producer with pending records, or a consumer, retries a refused connection in a loop whose
  only pause is the refusal itself (its metadata updates resolve at once when no node answers),
  which logged ~3,000 lines a second and used a third of a core per client. Every connection
  attempt of every aiokafka client of the process (the intake consumer, Faust's consumer and
  producer, admin clients) goes through `create_conn`, which we wrap: after a failed attempt
  to an address, the next one waits 0.2 s, then twice as long each time, up to
  `ENGAGEMENT_KAFKA_RETRY_SECONDS` (5 s); a success resets it. While another address of the
  cluster answers, an address in backoff fails at once instead of waiting (a client's
  connections are made one at a time, so a wait would hold up the healthy brokers too).
- **Reachability** (`REACH`): the same wrapper records, per address, the last success and the
  first failure since; Kafka is unreachable when every address tried since the last success
  has failed. The worker reports it in `/health` (`kafka_reachable`; not ready while it is
  false) and `/metrics` (`engagement_kafka_reachable`, `engagement_kafka_unreachable_seconds`).
- **Quiet logs** (`QuietKafkaLogs`, a logging filter on the handlers): a message of aiokafka,
  Faust or mode is shown once per `REPEAT_SECONDS` per message template (the next one says
  how many were left out); while Kafka is unreachable, aiokafka's messages are only counted.
  `status_lines` says instead, at most once every `STATUS_EVERY_SECONDS`, what the process
  waits for: "Kafka 127.0.0.1:9092 unreachable for 40 s (connection refused); retrying every
  5 s", and "Kafka ... reachable again after 62 s".
- **Starting** (`wait_for_kafka`): a worker waits for Kafka up to
  `ENGAGEMENT_START_TIMEOUT_SECONDS` (60 s), one line per attempt, then gives up with one line
  and exit 1.
- **Stopping** (`StopGuard`): SIGTERM or SIGINT starts Faust's graceful stop and arms a
  deadline, `ENGAGEMENT_STOP_TIMEOUT_SECONDS` (12 s): at the deadline, or as soon as Kafka is
  unreachable with nothing left to commit, the worker exits: 0 when everything it applied was
  committed (persisted by its epochs), 1 with a line naming what was not (that input is read
  again by the next worker: nothing is lost). A second SIGINT or SIGTERM exits at once (130,
  with the same line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.exits import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK
from streams.errors import ConfigError

log = logging.getLogger("engagement.outage")

# the first wait after a failed connection attempt (doubled up to the retry setting)
FIRST_BACKOFF_SECONDS = 0.2
STATUS_EVERY_SECONDS = 10.0
REPEAT_SECONDS = 30.0

ENV_RETRY = "ENGAGEMENT_KAFKA_RETRY_SECONDS"
ENV_START = "ENGAGEMENT_START_TIMEOUT_SECONDS"
ENV_STOP = "ENGAGEMENT_STOP_TIMEOUT_SECONDS"


@dataclass(frozen=True)
class OutageSettings:
    """The environment settings of this module (docs/operations.md, "Settings")."""

    retry_seconds: float = 5.0  # the longest wait between two connection attempts
    start_timeout_seconds: float = 60.0  # a starting worker waits this long for Kafka
    stop_timeout_seconds: float = 12.0  # SIGTERM/SIGINT: the longest graceful stop

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OutageSettings:
        env = os.environ if env is None else env

        def number(var: str, default: float, low: float, high: float) -> float:
            raw = env.get(var, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{var}: expected seconds, got {raw!r}") from None
            if not low <= value <= high:
                raise ConfigError(f"{var}: {value:g} s is outside {low:g}..{high:g}")
            return value

        return cls(
            retry_seconds=number(ENV_RETRY, cls.retry_seconds, 0.5, 60),
            start_timeout_seconds=number(ENV_START, cls.start_timeout_seconds, 0, 3600),
            # under 20 s: a scheduler's grace period (Kubernetes: 30 s) must cover it
            stop_timeout_seconds=number(ENV_STOP, cls.stop_timeout_seconds, 1, 19),
        )


# ---- reachability and the reconnect backoff ---------------------------------------------------


@dataclass
class _Address:
    failures: int = 0  # consecutive failed attempts
    failing_since: float | None = None  # monotonic time of the first of them
    next_try: float = 0.0  # no attempt before this (monotonic)
    error: str = ""
    ok_at: float | None = None  # the last successful connection


def describe_error(exc: BaseException) -> str:
    """A short reason for a failed connection ("connection refused", ...)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer (timeout)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass
class Reachability:
    """What the process's Kafka connection attempts found, per broker address."""

    retry_seconds: float = 5.0
    addresses: dict[tuple[str, int], _Address] = field(default_factory=dict)
    suppressed: int = 0  # client log lines left out while unreachable (QuietKafkaLogs)
    down_count: int = 0  # outages seen

    def failed(self, key: tuple[str, int], exc: BaseException) -> None:
        a = self.addresses.setdefault(key, _Address())
        now = time.monotonic()
        was_reachable = self.reachable
        if a.failures == 0:
            a.failing_since = now
        a.failures += 1
        a.error = describe_error(exc)
        wait = min(FIRST_BACKOFF_SECONDS * 2 ** (a.failures - 1), self.retry_seconds)
        a.next_try = now + wait
        if was_reachable and not self.reachable:
            self.down_count += 1

    def succeeded(self, key: tuple[str, int]) -> None:
        a = self.addresses.setdefault(key, _Address())
        a.failures, a.failing_since, a.next_try = 0, None, 0.0
        a.ok_at = time.monotonic()

    @property
    def reachable(self) -> bool:
        """False when every address tried is failing (True before any attempt)."""
        return not self.addresses or any(a.failures == 0 for a in self.addresses.values())

    def others_up(self, key: tuple[str, int]) -> bool:
        return any(a.failures == 0 for k, a in self.addresses.items() if k != key)

    def down_seconds(self) -> float:
        if self.reachable:
            return 0.0
        since = min(a.failing_since or time.monotonic() for a in self.addresses.values())
        return time.monotonic() - since

    def last_error(self) -> str:
        errors = [a.error for a in self.addresses.values() if a.failures]
        return errors[0] if errors else ""

    def wait_before(self, key: tuple[str, int]) -> float:
        a = self.addresses.get(key)
        return 0.0 if a is None else max(0.0, a.next_try - time.monotonic())


REACH = Reachability()
_installed = False


class KafkaBackoffError(OSError):
    """A connection not attempted: the address is in backoff while others answer."""


def install_backoff(retry_seconds: float) -> Reachability:
    """Wrap aiokafka's `create_conn` (every client's connections) with the reconnect backoff
    and the reachability record. Idempotent; returns the process's Reachability."""
    global _installed
    REACH.retry_seconds = retry_seconds
    if _installed:
        return REACH
    import aiokafka.client

    original = aiokafka.client.create_conn

    async def create_conn(host: str, port: int, **kw: Any) -> Any:
        key = (str(host), int(port))
        wait = REACH.wait_before(key)
        if wait > 0:
            if REACH.others_up(key):
                a = REACH.addresses[key]
                raise KafkaBackoffError(f"{host}:{port} unreachable ({a.error}); retried later")
            await asyncio.sleep(wait)
        try:
            conn = await original(host, port, **kw)
        except Exception as exc:  # OSError, TimeoutError, KafkaError (handshake, authentication)
            REACH.failed(key, exc)
            raise
        REACH.succeeded(key)
        return conn

    aiokafka.client.create_conn = create_conn
    _installed = True
    return REACH


# ---- quiet logs ----------------------------------------------------------------------------------

QUIETED = ("aiokafka", "faust", "mode")


class QuietKafkaLogs(logging.Filter):
    """On a handler: each message template of aiokafka, Faust or mode at most once per
    `repeat` seconds (the next one shown says how many were left out); aiokafka's messages
    only counted while Kafka is unreachable (REACH.suppressed; the status lines say it)."""

    def __init__(self, reach: Reachability = REACH, repeat: float = REPEAT_SECONDS) -> None:
        super().__init__()
        self.reach = reach
        self.repeat = repeat
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # -> (shown at, left out)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if not name.startswith(QUIETED) or record.levelno >= logging.CRITICAL:
            return True
        if not name.startswith(("faust", "mode")) and not self.reach.reachable:
            with self._lock:
                self.reach.suppressed += 1
            return False
        key = (name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            shown, left_out = self._seen.get(key, (-1e18, 0))
            if now - shown < self.repeat:
                self._seen[key] = (shown, left_out + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 2000:  # templates are few; keep the table small anyway
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.repeat}
        if left_out:
            record.msg = f"{record.getMessage()} [and {left_out} more like it in {self.repeat:g} s]"
            record.args = None
        return True


def quiet_handlers(handlers: Iterable[logging.Handler] | None = None) -> QuietKafkaLogs:
    """Put one QuietKafkaLogs on the given handlers (default: the root logger's, or Python's
    last-resort stderr handler when there is none)."""
    flt = QuietKafkaLogs()
    targets = list(handlers) if handlers is not None else list(logging.getLogger().handlers)
    if not targets and logging.lastResort is not None:
        targets = [logging.lastResort]
    for h in targets:
        if not any(isinstance(f, QuietKafkaLogs) for f in h.filters):
            h.addFilter(flt)
    return flt


def status_line(bootstrap: str, reach: Reachability = REACH) -> str:
    """'Kafka X unreachable for 40 s (connection refused); retrying every 5 s; ...'."""
    down = reach.down_seconds()
    line = (
        f"Kafka {bootstrap} unreachable{f' for {down:.0f} s' if down >= 1 else ''} "
        f"({reach.last_error() or 'no connection'}); retrying every {reach.retry_seconds:g} s"
    )
    if reach.suppressed:
        line += f"; {reach.suppressed:,} client log lines left out"
    return line


async def status_lines(
    bootstrap: str,
    say: Callable[[str], Any],
    reach: Reachability = REACH,
    every: float = STATUS_EVERY_SECONDS,
    extra: Callable[[], str] | None = None,
) -> None:
    """Say what the process waits for while Kafka is unreachable: when it starts, then at most
    once every `every` seconds, and once when Kafka answers again. Runs until cancelled."""
    down_at: float | None = None
    last = 0.0
    while True:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        if not reach.reachable and reach.down_seconds() >= 1.0:  # not a single hiccup
            if down_at is None:
                down_at = now - reach.down_seconds()
            if now - last >= every:
                more = extra() if extra is not None else ""
                say(status_line(bootstrap, reach) + (f"; {more}" if more else ""))
                last = now
        elif reach.reachable and down_at is not None:
            say(f"Kafka {bootstrap} reachable again after {now - down_at:.0f} s; resuming")
            down_at, last = None, 0.0


# ---- starting: wait for Kafka, one line per attempt ----------------------------------------------


class KafkaUnreachable(Exception):
    """Kafka did not answer within the start timeout."""


async def wait_for_kafka(
    bootstrap: str,
    client_kwargs: Mapping[str, Any],
    timeout: float,
    retry: float,
    say: Callable[[str], Any],
) -> float:
    """Connect to Kafka (a metadata request), retrying every `retry` seconds for up to
    `timeout`; one line per failed attempt. Returns the seconds waited; raises KafkaUnreachable
    with a one-line reason."""
    from aiokafka.client import AIOKafkaClient

    start = time.monotonic()
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)  # our line says it once per attempt
    try:
        while True:
            client = AIOKafkaClient(
                bootstrap_servers=bootstrap, request_timeout_ms=5000, **client_kwargs
            )
            try:
                await asyncio.wait_for(client.bootstrap(), max(retry, 5.0))
                return time.monotonic() - start
            except Exception as exc:
                reason = REACH.last_error() or describe_error(exc)
            finally:
                with contextlib.suppress(Exception):
                    await client.close()
            waited = time.monotonic() - start
            if waited >= timeout:
                raise KafkaUnreachable(
                    f"Kafka {bootstrap} unreachable for {waited:.0f} s ({reason}); giving up "
                    f"({ENV_START}={timeout:g})"
                )
            pause = min(retry, timeout - waited)
            say(
                f"Kafka {bootstrap} unreachable ({reason}); retrying in {pause:.0f} s "
                f"(waited {waited:.0f} of {timeout:g} s)"
            )
            await asyncio.sleep(pause)
    finally:
        kafka_log.setLevel(level)


# ---- stopping --------------------------------------------------------------------------------


def uncommitted(committers: Iterable[Any]) -> list[str]:
    """What the epochs of the given stages (agents/epoch.py EpochCommitter) hold that is not
    persisted: open epochs with changes, commits still running, failed partitions."""
    out = []
    for c in committers:
        open_ = sorted(p for p, ep in c.open.items() if ep.touched or ep.events or ep.keys)
        running = sorted(p for p, task in c.commits.items() if not task.done())
        failed = sorted(c.failed)
        parts = []
        if open_:
            n = sum(len(c.open[p].events) for p in open_)
            parts.append(f"{len(open_)} open epoch(s) (partitions {_ints(open_)}; {n} messages)")
        if running:
            parts.append(f"{len(running)} commit(s) in flight (partitions {_ints(running)})")
        if failed:
            parts.append(f"failed commits (partitions {_ints(failed)})")
        if parts:
            out.append(f"{c.stage}: " + ", ".join(parts))
    return out


def _ints(values: Iterable[int]) -> str:
    return ", ".join(str(v) for v in values)


class StopGuard:
    """SIGTERM and SIGINT of a worker: a graceful stop with a deadline, then the exit code
    that says whether everything applied was committed (see the module's docstring)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(
        self,
        pending: Callable[[], list[str]],
        timeout: float,
        reach: Reachability = REACH,
        say: Callable[[str], Any] | None = None,
    ) -> None:
        self.pending = pending
        self.timeout = timeout
        self.reach = reach
        self.say = say or (lambda msg: log.warning("%s", msg))
        self.signum: int | None = None
        self.started: float | None = None
        self.failures: list[str] = []  # epochs that failed while stopping (worker._epoch_failed)
        self._timer: threading.Timer | None = None

    def install(self, loop: asyncio.AbstractEventLoop, graceful: Callable[[int], Any]) -> None:
        """Replace the loop's SIGTERM/SIGINT handlers: the first starts `graceful(signum)`."""
        self._graceful = graceful
        for sig in self.SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig, loop)

    def _on_signal(self, signum: int, loop: asyncio.AbstractEventLoop) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:  # the second one: at once
            self._exit(EXIT_INTERRUPTED, f"second {name}: stopping at once")
            return
        self.signum, self.started = signum, time.monotonic()
        self.say(
            f"{name}: stopping; committing what was applied (at most {self.timeout:g} s, "
            f"{ENV_STOP}); a second {name} stops at once"
        )
        self._graceful(signum)
        loop.call_later(0.5, self._check, loop)
        # a backstop should the event loop itself be stuck
        self._timer = threading.Timer(self.timeout + 3, self._backstop)
        self._timer.daemon = True
        self._timer.start()

    def not_committed(self) -> list[str]:
        try:
            lines = self.pending()
        except Exception as exc:  # never let the report stop the exit
            lines = [f"unknown ({exc!r})"]
        return lines + self.failures

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.started is not None
        left = self.not_committed()
        if not left and not self.reach.reachable:
            # nothing to commit, and Faust's goodbyes (leave the group, commit offsets) need a
            # broker that is not there: done
            self._exit(EXIT_OK, "stopped: everything applied was committed (Kafka unreachable)")
        elif time.monotonic() - self.started >= self.timeout:
            if left:
                self._exit(EXIT_FAILURE, f"not stopped cleanly within {self.timeout:g} s")
            else:
                self._exit(EXIT_OK, f"stopped after {self.timeout:g} s: everything applied "
                           "was committed")  # fmt: skip
        else:
            loop.call_later(0.5, self._check, loop)

    def _backstop(self) -> None:
        self._exit(EXIT_FAILURE if self.not_committed() else EXIT_OK, "the stop is stuck")

    def _exit(self, code: int, why: str) -> None:
        left = self.not_committed()
        if left and code == EXIT_OK:
            code = EXIT_FAILURE
        msg = why
        if left:
            msg += "; NOT committed: " + "; ".join(left)
            msg += " (their input is read again by the next worker: nothing is lost)"
        self.say(f"{msg}; exit {code}")
        with contextlib.suppress(Exception):
            logging.shutdown()
        sys.stderr.flush()
        os._exit(code)

    def exit_code(self, code: int) -> int:
        """The process's exit code once Faust's stop returned normally with `code`."""
        if self._timer is not None:
            self._timer.cancel()
        left = self.not_committed()
        if left:
            self.say(
                "stopped; NOT committed: " + "; ".join(left)
                + " (their input is read again by the next worker: nothing is lost); exit 1"
            )  # fmt: skip
            return EXIT_FAILURE
        if self.signum is not None and code == 0:
            self.say("stopped: everything applied was committed; exit 0")
        return code


def make_worker_class() -> type:
    """faust.Worker with quiet logs, the status lines and the StopGuard's signal handling."""
    import faust

    class Worker(faust.Worker):
        guard: StopGuard
        bootstrap: str

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            quiet_handlers(logger.handlers)

        def install_signal_handlers(self) -> None:
            super().install_signal_handlers()

            def graceful(sig: int) -> None:  # what Faust's own handlers do
                (self._on_sigint if sig == signal.SIGINT else self._on_sigterm)()

            self.guard.install(self.loop, graceful)
            self._status = asyncio.ensure_future(
                status_lines(self.bootstrap, lambda m: log.warning("%s", m)), loop=self.loop
            )

    return Worker


@contextlib.contextmanager
def start_signals(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> Iterator[list[int]]:
    """While a command waits for Kafka: SIGTERM/SIGINT cancel `task`; yields the signals got."""
    got: list[int] = []

    def on(sig: int) -> None:
        got.append(sig)
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on, sig)
    try:
        yield got
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


class KafkaCollector:
    """/metrics: `engagement_kafka_reachable` (1/0) and `engagement_kafka_unreachable_seconds`."""

    def __init__(self, reach: Reachability = REACH) -> None:
        self.reach = reach

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily(
            "engagement_kafka_reachable",
            "1 while this process's Kafka clients can connect to a broker, 0 while every "
            "connection attempt fails (docs/operations.md, 'When the broker is gone')",
            value=1 if self.reach.reachable else 0,
        )
        yield GaugeMetricFamily(
            "engagement_kafka_unreachable_seconds",
            "how long Kafka has been unreachable (0 while it is reachable)",
            value=round(self.reach.down_seconds(), 3),
        )


class Deadline:
    """A stop's deadline for a command's main task: `timeout` seconds after `arm`, the task is
    cancelled, again every 0.2 s (a cancellation can be absorbed by a `finally` that awaits
    a client's own stop), and should the process still run 5 s later it exits 1 at once."""

    def __init__(self, timeout: float, say: Callable[[str], Any] | None = None) -> None:
        self.timeout = timeout
        self.say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.expired = False
        self.armed = False

    def arm(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        if self.armed:
            return
        self.armed = True
        loop.call_later(self.timeout, self._expire, loop, task)
        timer = threading.Timer(self.timeout + 5, self._backstop)
        timer.daemon = True
        timer.start()

    def _expire(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        if not task.done():
            self.expired = True
            task.cancel()
            loop.call_later(0.2, self._expire, loop, task)

    def _backstop(self) -> None:
        self.say(
            f"still stopping {self.timeout + 5:g} s after the signal; records not yet "
            "acknowledged by Kafka may be lost; exit 1"
        )
        os._exit(EXIT_FAILURE)


class SignalStop:
    """SIGTERM/SIGINT of a command (`engagement load`): the first sets `signum` (the command
    stops at its next record and flushes) and arms a Deadline; a second one cancels the task
    at once (`forced`)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, timeout: float, say: Callable[[str], Any] | None = None) -> None:
        self.deadline = Deadline(timeout, say)
        self.signum: int | None = None
        self.forced = False

    @property
    def expired(self) -> bool:
        return self.deadline.expired

    @property
    def name(self) -> str:
        name = signal.Signals(self.signum).name if self.signum else "?"
        return f"{name} (Ctrl-C)" if self.signum == signal.SIGINT else name

    def install(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        for sig in self.SIGNALS:
            loop.add_signal_handler(sig, self.on_signal, sig, loop, task)

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in self.SIGNALS:
            loop.remove_signal_handler(sig)

    def on_signal(self, sig: int, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        if self.signum is None:
            self.signum = sig
            self.deadline.arm(loop, task)
        else:
            self.forced = True
            task.cancel()
