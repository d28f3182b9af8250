"""Every documented `engagement emit` example runs as written against the real broker: the ```sh
blocks of README.md and docs/*.md, and the examples of `engagement emit --help`. An example ends
with exit 0 (sent), or with the code its comment announces (`# exit 2`). A fixed `ts` that has
gone stale (too_late) fails here, so the examples use relative times."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from engagement_cli.cmd_emit import __doc__ as EMIT_HELP
from tests.integration.conftest import Stack
from tests.integration.live_harness import REPO

pytestmark = pytest.mark.integration

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _commands(text: str) -> list[str]:
    """Logical lines (continuations joined) that start with `engagement emit`."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [ln.strip() for ln in joined.splitlines() if ln.strip().startswith("engagement emit")]


def documented() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for block in re.findall(r"^```(?:sh|bash)\n(.*?)^```$", page.read_text(), re.S | re.M):
            out += [(page.name, c) for c in _commands(block)]
    examples = (EMIT_HELP or "").split("examples:", 1)[1].split("\n\n", 1)[0]
    out += [("emit --help", c) for c in _commands(examples)]
    return out


def split_comment(line: str, first_only: bool = True) -> tuple[str, int]:
    """The command (up to a `#` comment outside quotes and, with `first_only`, to a `&&`) and
    the exit code expected."""
    m = re.search(r"\s#\s*(.*)$", line)
    comment = m.group(1) if m and line.count('"', 0, m.start()) % 2 == 0 else ""
    cmd = line[: m.start()] if comment else line
    if first_only:
        cmd = cmd.split(" && ", 1)[0]
    code = re.search(r"exit (\d+)", comment)
    return cmd.strip(), int(code.group(1)) if code else 0


def test_there_are_examples_in_the_docs_and_the_help() -> None:
    sources = {src for src, _ in documented()}
    assert {"producers.md", "emit --help", "quickstart.md"} <= sources, sources


@pytest.mark.parametrize("source,line", documented())
def test_each_emit_example_runs(
    source: str, line: str, stack: Stack, topics: dict[str, str], topic_prefix: str
) -> None:
    cmd, expected = split_comment(line)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_")}
    env.update(
        KAFKA_BOOTSTRAP=stack.kafka_bootstrap,
        ENGAGEMENT_TOPIC_PREFIX=topic_prefix,
        PATH=f"{Path(REPO / '.venv' / 'bin')}:{env.get('PATH', '')}",
    )
    r = subprocess.run(
        ["bash", "-c", "set -o pipefail; " + cmd], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode == expected, f"{source}: {cmd}\n{r.stdout}\n{r.stderr}"
    if expected == 0 and "--dry-run" not in cmd:
        assert f"sent to {topic_prefix}" in r.stdout, r.stdout


def worker_blocks() -> list[tuple[str, str]]:
    """The shell lines of the docs that need a running worker (README's curl lines, the smoke
    test of docs/operations.md): every ```sh block that starts no stack (`make`), uses no
    cluster tool (`kubectl`), no secure stack and no cluster of the reader's (hosts in
    `.example`, docs/kafka.md), minus the quickstart (its own test)."""
    out = []
    for page in PAGES:
        if page.name == "quickstart.md":
            continue
        for block in re.findall(r"^```(?:sh|bash)\n(.*?)^```$", page.read_text(), re.S | re.M):
            if re.search(r"\bmake\b|kubectl|SECURE|secure|\.example\b", block):
                continue
            for ln in re.sub(r"\\\n\s*", " ", block).splitlines():
                if ln.strip() and not ln.strip().startswith("#"):
                    out.append((page.name, ln.strip()))
    return out


def test_the_documented_commands_against_a_worker(
    stack: Stack, topic_prefix: str, redis_db: int, tmp_path: Path
) -> None:
    from tests.integration.live_harness import wait_ready
    from tests.integration.ops_helpers import env_for, worker

    lines = worker_blocks()
    assert any(ln.startswith("curl") for _, ln in lines), lines  # README's
    assert any(src == "operations.md" for src, _ in lines), lines  # the smoke test
    env = env_for(stack, topic_prefix, redis_db)
    env.pop("ENGAGEMENT_CLOCK")
    w = worker("docs", env, tmp_path)
    env.update(
        ENGAGEMENT_WORKER_URL=w.url,
        PATH=f"{Path(REPO / '.venv' / 'bin')}:{env.get('PATH', '')}",
    )
    try:
        w.start()
        wait_ready([w])
        deadline = time.monotonic() + 120  # until its partitions are assigned: /snapshot is 200
        while w.get("/snapshot")[0] != 200:
            assert time.monotonic() < deadline, w.tail()
            time.sleep(1)
        for source, line in lines:
            cmd, expected = split_comment(
                line.replace("127.0.0.1:6066", f"127.0.0.1:{w.port}"), False
            )
            r = subprocess.run(
                ["bash", "-c", "set -o pipefail; " + cmd], cwd=REPO, env=env,
                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            assert r.returncode == expected, (
                f"{source}: {cmd}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
            )
            assert r.stdout.strip() or expected, f"{source}: {cmd} printed nothing"
    finally:
        w.stop()
