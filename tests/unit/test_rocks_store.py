"""agents/epoch.py `RocksStore` on a real RocksDB (rocksdict): an epoch written to the store
survives a crash, with its persisted offset (decision 44: a restart then reads only the
changelog after it), and the store holds what the epochs wrote.

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
    for step in sys.argv[2:]:  # an epoch each: key=value, its changelog offset
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


def test_every_epoch_written_survives_a_crash_with_its_offset(tmp_path: Path) -> None:
    # without RocksDB's write-ahead log the memtables would be lost: an empty store, and a
    # restart re-reading the whole changelog (what decision 44 measured and took back)
    got = crash_after(tmp_path / "db", "1", "2")
    assert got == {b"k1": b"v1", b"k2": b"v2", OFFSET_KEY: b"102"}


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
