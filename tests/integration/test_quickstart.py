"""docs/quickstart.md, executed literally: every ```sh block, in order, in one bash script with
`set -euo pipefail`, against the local stack. Only the environment is the test's: its ports,
topic prefix, Faust app id, Redis database and worker port, so it runs next to other tests."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import Stack
from tests.integration.live_harness import REPO, free_port

pytestmark = pytest.mark.integration

QUICKSTART = REPO / "docs" / "quickstart.md"
# What the commands need from the repo; the outputs (demo.jsonl, ...) land in the test's directory.
LINKED = (
    "Makefile",
    "pyproject.toml",
    ".venv",
    "deploy",
    "agents",
    "engagement_cli",
    "streams",
    "schemas",
    "native",  # `make install` checks the compiled replay core is up to date
    "sdk",  # the producer SDK, installed by `make install` (`pip install -e ./sdk`)
)


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)


def test_the_quickstart_runs_as_written(
    stack: Stack, topic_prefix: str, redis_db: int, tmp_path: Path
) -> None:
    blocks = shell_blocks(QUICKSTART.read_text())
    assert len(blocks) >= 4, "the quickstart lost its shell blocks"
    work = tmp_path / "clone"
    work.mkdir()
    for name in LINKED:
        if (REPO / name).exists():
            (work / name).symlink_to(REPO / name)
    port = free_port()
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP=stack.kafka_bootstrap,
        REDIS_URL=f"redis://{stack.redis_host}:{stack.redis_port}/{redis_db}",
        ENGAGEMENT_RUN_DIR=str(stack.log_dir.parent),  # the running stack, not a new one
        ENGAGEMENT_TOPIC_PREFIX=topic_prefix,
        ENGAGEMENT_APP_ID=topic_prefix.strip(".").replace(".", "-") + "-app",
        ENGAGEMENT_DATA_DIR=str(tmp_path / "worker-data"),
        ENGAGEMENT_WEB_PORT=str(port),
        ENGAGEMENT_WORKER_URL=f"http://127.0.0.1:{port}",
        ENGAGEMENT_WORKER_ID="quickstart",
    )
    env.pop("ENGAGEMENT_CLOCK", None)
    script = (
        "set -euo pipefail\n"
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"  # the background worker
        + "\n".join(f"echo '+++ block {i}'\n{b}" for i, b in enumerate(blocks))
    )
    (work / "quickstart.sh").write_text(script)
    r = subprocess.run(
        ["bash", "quickstart.sh"], cwd=work, env=env, capture_output=True, text=True,
        timeout=900, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    log = (work / "worker.log").read_text()[-3000:] if (work / "worker.log").exists() else ""
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}\n{log}"
    out = r.stdout
    assert re.search(r"^DAU \d+ MAU \d+ NPS ", out, re.M), out[-3000:]
    assert "live == replay" in out
    assert "Snapshot as of" in out  # the table of `engagement snapshot`
    assert "quickstart-user" not in r.stderr
