"""docs/cli.md against the code: one row per registered command, and each row's exit codes are
the ones the command's module returns (read from its source), plus 130 where it handles it."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from engagement_cli import cli

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "cli.md"


def _rows() -> dict[str, set[int]]:
    rows = {}
    for m in re.finditer(r"^\| `([a-z-]+)` \| .*? \| ([0-9, ]+) \|$", DOC.read_text(), re.M):
        rows[m.group(1)] = {int(x) for x in m.group(2).split(",")}
    return rows


def _exit_names(node: ast.AST) -> set[str]:
    """EXIT_* names anywhere in a returned expression (a literal, `a if c else b`, a mapping)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id.startswith("EXIT_")}


def _codes(module_name: str) -> set[int]:
    module = importlib.import_module(module_name)
    path = Path(str(module.__file__))
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Return) and node.value is not None:
            names |= _exit_names(node.value)
    return {int(getattr(module, n, getattr(cli, n, -1))) for n in names} - {-1}


def test_every_command_has_a_row_and_no_other() -> None:
    assert set(_rows()) == set(cli.COMMANDS)


def test_each_row_lists_the_exit_codes_its_command_returns() -> None:
    rows = _rows()
    wrong = {}
    for name, (module_name, _help) in cli.COMMANDS.items():
        # usage errors (2) come from argparse for every command
        in_code = _codes(module_name) | {cli.EXIT_USAGE}
        if module_name == "engagement_cli.cmd_worker":
            in_code |= {cli.EXIT_OK}  # the worker exits 0 when stopped (SIGTERM)
        documented = rows[name] | {cli.EXIT_USAGE}
        if in_code != documented:
            wrong[name] = (sorted(in_code), sorted(documented))
    assert not wrong, wrong
