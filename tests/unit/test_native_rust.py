"""The compiled core's own Rust unit tests (`#[test]` in native/src/: exact division and
rounding helpers that no Python input reaches at every edge), run by `cargo test` so that the
test command runs them too. Without cargo they are skipped, except in CI, which requires it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cargo() -> str:
    found = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(found).exists():
        if os.environ.get("CI"):
            pytest.fail("cargo is required in CI to test native/")
        pytest.skip("cargo not found")
    return found


def test_the_cores_rust_unit_tests_pass() -> None:
    env = dict(os.environ)
    env.setdefault(
        "CARGO_TARGET_DIR", str(Path.home() / ".cache" / "engagement-metrics" / "cargo-target")
    )
    done = subprocess.run(
        [_cargo(), "test", "--quiet", "--manifest-path", str(ROOT / "native" / "Cargo.toml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "test result: ok" in out and " 0 failed" in out, out[-4000:]
    # every #[test] of native/src ran: none filtered out, none ignored
    declared = sum(p.read_text().count("#[test]") for p in (ROOT / "native" / "src").glob("*.rs"))
    ran = sum(
        int(line.split(" passed")[0].rsplit(" ", 1)[-1])
        for line in out.splitlines()
        if line.startswith("test result: ok.")
    )
    assert ran == declared >= 4, out[-4000:]
