"""agents/heap.py: the worker gives the heap's free memory back to the system (glibc)."""

from __future__ import annotations

import asyncio
import ctypes
from typing import Any

import pytest

from agents import heap

libc = ctypes.CDLL(None)
GLIBC = hasattr(libc, "malloc_trim")
needs_glibc = pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")


def _hole(blocks: int = 2000, size: int = 64 * 1024) -> int:
    """Leave ~blocks x size bytes of free heap that glibc cannot give back on its own: blocks
    below the mmap threshold, all freed but the last, which pins the top of the heap. Returns
    the pinning block (to free later)."""
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    ptrs = []
    for _ in range(blocks):
        p = libc.malloc(size)
        ctypes.memset(p, 1, size)  # resident
        ptrs.append(p)
    pin = libc.malloc(size)
    ctypes.memset(pin, 1, size)
    for p in ptrs:
        libc.free(p)
    return int(pin)


@needs_glibc
def test_trim_gives_the_free_heap_back() -> None:
    trimmer = heap.HeapTrimmer()
    assert trimmer.available
    trimmer.trim()  # whatever was free before
    pin = _hole()
    held = heap.resident_bytes()
    gone = trimmer.trim()
    try:
        # most of the ~125 MiB freed goes back, and the counters say so
        assert gone > 64 * 1024 * 1024, gone
        assert heap.resident_bytes() < held - 64 * 1024 * 1024
        assert trimmer.trims == 2 and trimmer.released >= gone
    finally:
        libc.free(ctypes.c_void_p(pin))


@needs_glibc
def test_tick_trims_off_the_event_loop() -> None:
    trimmer = heap.HeapTrimmer()
    pin = _hole()
    try:
        asyncio.run(trimmer.tick())
        assert trimmer.trims == 1 and trimmer.released > 64 * 1024 * 1024
    finally:
        libc.free(ctypes.c_void_p(pin))


class _App:
    def __init__(self) -> None:
        self.timers: list[tuple[float, str, Any]] = []

    def timer(self, interval: float, name: str) -> Any:
        def add(fn: Any) -> Any:
            self.timers.append((interval, name, fn))
            return fn

        return add


def test_register_puts_a_timer_on_the_app_unless_off(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _App()
    trimmer = heap.register(app, 10)
    assert [(i, n) for i, n, _ in app.timers] == ([(10.0, "heap.trim")] if GLIBC else [])
    if GLIBC:
        assert app.timers[0][2] == trimmer.tick
    off = _App()
    heap.register(off, 0)
    assert off.timers == []
    # without malloc_trim (musl, macOS): no timer, and trim() does nothing
    monkeypatch.setattr(heap, "_malloc_trim", lambda: None)
    bare = _App()
    t = heap.register(bare, 10)
    assert bare.timers == [] and not t.available and t.trim() == 0
