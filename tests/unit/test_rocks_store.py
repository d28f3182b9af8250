"""agents/epoch.py `RocksStore` on a real RocksDB (rocksdict): epochs are written without the
write-ahead log, so a crash loses the last ones whole (their persisted offset with them) and
`make_durable` (on a revoke, at shutdown) is what makes them survive one.

A crash is a child process that writes and leaves with `os._exit`: nothing is closed or
flushed, as after a SIGKILL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import rocksdict

from agents.epoch import RocksStore

REPO = Path(__file__).resolve().parents[2]
OFFSET_KEY = b"__faust\x00offset__"

CHILD = textwrap.dedent(
    """
    import os, sys
    import rocksdict
    from agents.epoch import RocksStore

    class FaustStore:  # what RocksStore reads of faust.stores.rocksdb.Store
        offset_key = OFFSET_KEY
        def __init__(self, path):
            self._dbs = {0: rocksdict.Rdict(path, options=rocksdict.Options(raw_mode=True))}
        def _db_for_partition(self, p):
            return self._dbs[p]

    store = RocksStore(FaustStore(sys.argv[1]))
    for step in sys.argv[2:]:
        if step == "durable":
            store.make_durable()
        else:  # an epoch: key=value, its changelog offset
            n = int(step)
            store.write_epoch(0, [(b"k%d" % n, b"v%d" % n), (b"gone", None)], 100 + n)
    os._exit(0)  # a crash: nothing closed, nothing flushed
    """
).replace("OFFSET_KEY", repr(OFFSET_KEY))


def crash_after(path: Path, *steps: str) -> dict[bytes, bytes]:
    """Run the steps in a child that then dies; what the store holds when opened again."""
    subprocess.run(
        [sys.executable, "-c", CHILD, str(path), *steps], cwd=REPO, check=True, timeout=60
    )
    db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
    try:
        return {bytes(k): bytes(v) for k, v in db.items()}  # type: ignore[arg-type]
    finally:
        db.close()


def test_a_crash_loses_the_epochs_not_made_durable_whole(tmp_path: Path) -> None:
    # no write-ahead log: neither the epoch's writes nor its persisted offset survive, so the
    # store is at a consistent earlier point (here: empty) and recovery re-reads the changelog
    assert crash_after(tmp_path / "db", "1") == {}


def test_make_durable_keeps_every_epoch_written_before_it(tmp_path: Path) -> None:
    got = crash_after(tmp_path / "db", "1", "2", "durable")
    assert got == {b"k1": b"v1", b"k2": b"v2", OFFSET_KEY: b"102"}


def test_a_crash_after_make_durable_keeps_a_prefix_of_the_epochs(tmp_path: Path) -> None:
    # epoch 1 made durable, epoch 2 not: the store holds epoch 1 with its own offset, never
    # epoch 2's offset without its writes
    got = crash_after(tmp_path / "db", "1", "durable", "2")
    assert got == {b"k1": b"v1", OFFSET_KEY: b"101"}


def test_the_store_reads_back_what_an_epoch_wrote(tmp_path: Path) -> None:
    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))

    class FaustStore:
        offset_key = OFFSET_KEY

        def __init__(self) -> None:
            self._dbs = {3: db}

        def _db_for_partition(self, p: int) -> rocksdict.Rdict:
            return self._dbs[p]

    store = RocksStore(FaustStore())
    store.write_epoch(3, [(b"a", b"1"), (b"b", b"2")], 7)
    store.write_epoch(3, [(b"a", None), (b"c", b"3")], 9)
    assert {bytes(k): bytes(v) for k, v in db.items()} == {  # type: ignore[arg-type]
        b"b": b"2",
        b"c": b"3",
        OFFSET_KEY: b"9",
    }
    db.close()
