"""Giving the memory the worker has freed back to the operating system, now and then.

glibc's malloc keeps what a process frees for its next allocations, and returns to the system
only the free space at the top of its heap. A worker frees a lot between its long-lived
entities: each micro-batch's records, each epoch's stored bytes, each /snapshot's lists. The
holes stay resident. Measured on the 1M-user bench row (bench/RESULTS.md, 2026-12-06 session 12):
after the drain, the 100 /snapshot asks and the live phase, `malloc_trim(0)` took the worker
from 1,304 to 1,022 MB resident, so a fifth of its memory was free heap.

`HeapTrimmer` calls `malloc_trim(0)` every `heap_trim_seconds` (ENGAGEMENT_HEAP_TRIM_SECONDS,
0 turns it off) in a thread: the call releases the GIL (ctypes) and takes milliseconds (3.7 ms
for a 270 MB heap, in process), so the event loop goes on meanwhile. Where the C library has no
`malloc_trim` (musl, macOS) it does nothing and says so once.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident memory (Linux: /proc/self/statm); 0 where unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        fn = ctypes.CDLL(None).malloc_trim  # the C library the process runs on
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


class HeapTrimmer:
    """Gives the heap's free memory back to the system; `released` counts what that took off
    the resident memory (bytes, as /proc/self/statm saw it before and after each call)."""

    def __init__(self) -> None:
        self._trim = _malloc_trim()
        self.trims = 0
        self.released = 0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def trim(self) -> int:
        """One `malloc_trim(0)`: the bytes it took off the resident memory (0 when none, or
        without glibc)."""
        if self._trim is None:
            return 0
        before = resident_bytes()
        self._trim(0)
        gone = max(0, before - resident_bytes())
        self.trims += 1
        self.released += gone
        return gone

    async def tick(self) -> None:
        """The worker's timer: one trim off the event loop's thread."""
        gone = await asyncio.to_thread(self.trim)
        if gone >= 64 * 1024 * 1024:
            log.debug("gave %d MiB of freed heap back to the system", gone >> 20)


def register(app: object, seconds: int) -> HeapTrimmer:
    """A trimmer on a timer of `seconds` on the Faust app (none when 0, or without glibc)."""
    trimmer = HeapTrimmer()
    if seconds <= 0:
        return trimmer
    if not trimmer.available:
        log.info("the C library has no malloc_trim: freed heap stays with the worker")
        return trimmer
    app.timer(interval=float(seconds), name="heap.trim")(trimmer.tick)  # type: ignore[attr-defined]
    return trimmer
