"""docs/configuration.md lists every setting the code reads: the flags of every command (from
their argparse parsers), every environment variable (the `ENGAGEMENT_*`, `KAFKA_*`, `REDIS_*`
names and `os.environ` / `getenv` reads in agents/ and streams/, and the variables the local
stack's scripts read), and every TOML key (streams/config.py, agents/settings.py). A setting
added to the code without a line in the reference fails here."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

from agents.settings import TOML_KEYS
from engagement_cli.cli import COMMANDS, build_parser
from streams.config import METRICS_KEYS, Config

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "configuration.md").read_text()
ENV_NAME = re.compile(r"^(ENGAGEMENT|KAFKA|REDIS)_[A-Z0-9_]+$")


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser(name)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _section(name: str) -> str:
    m = re.search(rf"^### `engagement {re.escape(name)}`\n(.*?)(?=^#|\Z)", DOC, re.M | re.S)
    assert m, f"docs/configuration.md has no section for `engagement {name}`"
    return m.group(1)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_flag_of_every_command_is_listed(name: str) -> None:
    section = _section(name)
    code = set()
    for action in _subparser(name)._actions:
        if "--help" in action.option_strings:
            continue
        for opt in action.option_strings:
            code.add(opt)
            assert re.search(rf"`{re.escape(opt)}[ `]", section), f"{name}: {opt} is not listed"
        if not action.option_strings:
            label = action.metavar or action.dest.upper()
            assert f"`{label}`" in section, f"{name}: the argument {label} is not listed"
    listed = set(re.findall(r"^\| `(--[a-z-]+)", section, re.M))
    listed |= set(re.findall(r", `(--[a-z-]+)", section))
    assert listed <= code, f"{name}: listed but not a flag: {sorted(listed - code)}"


def _env_in_python() -> dict[str, str]:
    found: dict[str, str] = {}
    for top in ("agents", "engagement_cli", "streams"):
        for path in sorted((REPO / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                name = None
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    if ENV_NAME.match(node.value):
                        name = node.value
                elif isinstance(node, ast.Call) and node.args:
                    f = ast.unparse(node.func)
                    arg = node.args[0]
                    if (f.endswith("environ.get") or f.endswith("getenv")) and isinstance(
                        arg, ast.Constant
                    ):
                        name = str(arg.value)
                elif (
                    isinstance(node, ast.Subscript)
                    and ast.unparse(node.value).endswith("environ")
                    and isinstance(node.slice, ast.Constant)
                ):
                    name = str(node.slice.value)
                if name:
                    found.setdefault(name, str(path.relative_to(REPO)))
    return found


def _env_in_scripts() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((REPO / "deploy" / "local").glob("*.sh")):
        for name in re.findall(r"\$\{([A-Z][A-Z0-9_]*):[-=]", path.read_text()):
            found.setdefault(name, str(path.relative_to(REPO)))
    return found


def test_the_scan_finds_what_it_should() -> None:
    env = _env_in_python()
    assert {"KAFKA_BOOTSTRAP", "ENGAGEMENT_REPLAY_ENGINE", "KAFKA_SASL_PASSWORD_FILE",
            "ENGAGEMENT_HEALTH_REFRESH_SECONDS", "ENGAGEMENT_WORKER_URL"} <= set(env)  # fmt: skip
    assert {"KAFKA_PORT", "DEMO_DURATION", "STACK_SERVICES"} <= set(_env_in_scripts())


def test_every_environment_variable_is_listed() -> None:
    missing = {
        name: where
        for name, where in {**_env_in_scripts(), **_env_in_python()}.items()
        if f"`{name}`" not in DOC
    }
    assert not missing, f"not in docs/configuration.md: {missing}"


def test_every_toml_key_is_listed() -> None:
    keys = [k for k in Config.KEYS if k not in ("metrics", "worker")]
    keys += [f"metrics.{k}" for k in METRICS_KEYS]
    keys += [f"worker.{k}" for k in TOML_KEYS]
    missing = [k for k in keys if not re.search(rf"^\| `{re.escape(k)}` \|", DOC, re.M)]
    assert not missing, f"TOML keys not in docs/configuration.md: {missing}"
