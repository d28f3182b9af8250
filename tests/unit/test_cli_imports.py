"""The command line (engagement_cli/) apart from the worker's runtime (agents/).

- No command imports faust (or mode, its service library) for `--help`, nor when it runs without
  a worker: each command is run in a fresh interpreter that then prints `sorted(sys.modules)`.
  `engagement worker` is the one command that imports faust, and only when it starts a worker.
- The imports run one way: engagement_cli -> agents -> streams. Neither agents/ nor streams/
  imports the command line (an AST scan of every import, at any depth, and of module names
  handed to importlib as strings).
- What a command runs but cannot be run here (it needs Kafka or Redis): no command module but
  cmd_worker reaches faust through what it imports (the module-level imports of agents/ and
  streams/, followed transitively).
"""

from __future__ import annotations

import ast
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engagement_cli.cli import COMMANDS
from tests.unit.records_builder import ans, ev

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "engagement_cli"
RUNTIME = ("agents", "streams")
FAUST = {"faust", "mode"}

# Runs `engagement ARGS...` in this interpreter, then writes the names of every imported module
# to the file named by the first argument (stdout is the command's own).
PROBE = """
import json, sys
out, argv = sys.argv[1], sys.argv[2:]
from engagement_cli.cli import main
try:
    code = main(argv)
except SystemExit as exc:
    code = exc.code
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def probe(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, set[str]]:
    out = tmp_path / "modules.json"
    r = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        timeout=60,
    )
    assert out.exists(), r.stderr.decode()
    got = json.loads(out.read_text())
    return got["code"], set(got["modules"])


def faust_of(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in FAUST)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_imports_no_faust(tmp_path: Path, command: str) -> None:
    code, modules = probe(tmp_path, command, "--help")
    assert code == 0
    assert f"{COMMANDS[command][0]}" in modules  # the command's module itself was loaded
    assert not faust_of(modules), f"`engagement {command} --help` imported {faust_of(modules)}"
    assert "agents.worker" not in modules


def test_global_help_imports_no_command(tmp_path: Path) -> None:
    code, modules = probe(tmp_path, "--help")
    assert code == 0
    assert not faust_of(modules)
    assert not {m for m in modules if m.startswith("engagement_cli.cmd_")}


def test_replay_and_simulate_run_without_faust(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_bytes(
        ev("1", "signup", "a", "2026-11-20T10:00:00Z")
        + b"\n"
        + ans("2", "nps", 9, "a", "2026-11-20T11:00:00Z")
        + b"\n"
    )
    code, modules = probe(
        tmp_path, "replay", "--as-of", "2026-11-20T12:00:00Z", "--progress", "none", str(data)
    )
    assert code == 0
    assert "streams.replay" in modules
    assert not faust_of(modules), f"`engagement replay` imported {faust_of(modules)}"

    out = tmp_path / "sim.jsonl"
    code, modules = probe(
        tmp_path, "simulate", "--users", "5", "--duration", "1d", "--progress", "none",
        "--max-records", "50", "--out", str(out),
    )  # fmt: skip
    assert code == 0
    assert out.read_text().count("\n") == 50
    assert not faust_of(modules), f"`engagement simulate --out` imported {faust_of(modules)}"


def test_worker_is_the_command_that_imports_faust(tmp_path: Path) -> None:
    """The probe sees faust where it is: a worker whose Kafka does not answer gives up after
    0.2 s, having imported the worker's runtime."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
        "ENGAGEMENT_START_TIMEOUT_SECONDS": "0.2",
        "ENGAGEMENT_KAFKA_RETRY_SECONDS": "0.5",
        "ENGAGEMENT_DATA_DIR": str(tmp_path / "data"),
        "ENGAGEMENT_WEB_PORT": "0",
    }
    code, modules = probe(tmp_path, "worker", env=env)
    assert code == 1
    assert "faust" in modules and "agents.worker" in modules


def _imports(
    path: Path, *, top_level_only: bool, strings: bool = False, root: Path = REPO
) -> set[str]:
    """The modules that `path` imports: every import, or only those run when it is imported
    (not inside a function, nor under `if TYPE_CHECKING:`); with `strings`, dotted names in
    string constants too (what importlib may be handed)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            ):
                continue
            if (
                top_level_only
                and isinstance(child, ast.If)
                and "TYPE_CHECKING" in ast.unparse(child.test)
            ):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                found.add(base)
                found.update(f"{base}.{a.name}" for a in child.names)
            elif (
                strings
                and isinstance(child, ast.Constant)
                and isinstance(child.value, str)
                and re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", child.value)
            ):
                found.add(child.value)  # importlib.import_module("package.module")
            visit(child)

    visit(tree)
    return found


def _file(module: str) -> Path | None:
    for candidate in (REPO / f"{module.replace('.', '/')}.py", REPO / module / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_the_runtime_never_imports_the_command_line() -> None:
    bad = []
    for top in RUNTIME:
        for path in sorted((REPO / top).rglob("*.py")):
            for name in _imports(path, top_level_only=False, strings=True):
                if name == "engagement_cli" or name.startswith("engagement_cli."):
                    bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, bad


def test_the_scan_sees_an_import_of_the_command_line(tmp_path: Path) -> None:
    """The scan above, on a file that does import the command line (lazily, inside a function)."""
    (tmp_path / "agents").mkdir()
    bad = tmp_path / "agents" / "bad.py"
    bad.write_text(
        "import importlib\n\n"
        "def f():\n    from engagement_cli.cli import main\n    return main\n\n"
        "def g():\n    return importlib.import_module('engagement_cli.cmd_top')\n"
    )
    found = _imports(bad, top_level_only=False, strings=True, root=tmp_path)
    assert {"engagement_cli.cli", "engagement_cli.cmd_top"} <= found
    assert "engagement_cli.cli" not in _imports(bad, top_level_only=True, root=tmp_path)


def _reaches(start: Path) -> set[str]:
    """Every module that running `start` may import: all imports of command-line modules (a
    command runs its functions), the module-level ones of agents/ and streams/. The modules
    that the dispatcher (cli.py) hands to importlib are not followed: each command is its own."""
    seen: set[str] = set()
    todo = [(start, False)]
    while todo:
        path, top_only = todo.pop()
        for name in _imports(path, top_level_only=top_only):
            if name in seen:
                continue
            seen.add(name)
            file = _file(name)
            if file is not None and file != path:
                todo.append((file, file.parent != CLI))
    return seen


def test_no_command_but_worker_reaches_faust() -> None:
    reached = {}
    for path in sorted(CLI.glob("*.py")):
        reached[path.stem] = sorted(m for m in _reaches(path) if m.split(".")[0] in FAUST)
    assert reached.pop("cmd_worker"), "cmd_worker runs a Faust worker: the scan must see faust"
    assert not any(reached.values()), {k: v for k, v in reached.items() if v}
