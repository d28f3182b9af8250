"""The rough edges found trying the command line as a new user would (issue 15, point 7): each
one as that user hit it, and what the command says now."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from agents.settings import Settings
from engagement_cli.cli import COMMANDS, EPILOG, build_parser, main
from streams.errors import ConfigError
from tests.unit.records_builder import ev

T = "2026-11-20T12:00:00Z"


def run(
    *args: str, env: Mapping[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "engagement_cli", *args], capture_output=True, text=True,
        timeout=60, env=full, input=None if stdin is None else stdin.decode(),
    )  # fmt: skip


def one_record(tmp_path: Path) -> Path:
    p = tmp_path / "in.jsonl"
    p.write_bytes(ev("1", "signup", "a", "2026-11-20T10:00:00Z") + b"\n")
    return p


# ---- replay -------------------------------------------------------------------------------


def test_a_bogus_replay_engine_from_the_environment_exits_2_naming_the_valid_ones(
    tmp_path: Path,
) -> None:
    r = run("replay", "--as-of", T, str(one_record(tmp_path)),
            env={"ENGAGEMENT_REPLAY_ENGINE": "bogus"})  # fmt: skip
    assert r.returncode == 2, r
    assert "ENGAGEMENT_REPLAY_ENGINE='bogus'" in r.stderr
    assert "auto, native, python" in r.stderr
    assert r.stdout == ""  # no snapshot
    ok = run("replay", "--as-of", T, str(one_record(tmp_path)),
             env={"ENGAGEMENT_REPLAY_ENGINE": "python"})  # fmt: skip
    assert ok.returncode == 0 and '"dau": 1' in ok.stdout


def test_an_as_of_before_every_record_warns_on_stderr(tmp_path: Path) -> None:
    p = one_record(tmp_path)
    early = run("replay", "--as-of", "2026-11-01T00:00:00Z", "--progress", "none", str(p))
    assert early.returncode == 0
    assert '"dau": 0' in early.stdout and '"accepted": 1' in early.stdout
    assert "warning" in early.stderr and "counts none of the 1 accepted records" in early.stderr
    fine = run("replay", "--as-of", T, "--progress", "none", str(p))
    assert fine.returncode == 0 and fine.stderr == "", fine.stderr


def test_a_broken_toml_reads_the_same_in_replay_emit_and_worker(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.toml"
    cfg.write_text("timezone = \n")
    replay = run("replay", "--config", str(cfg), "--as-of", T, str(one_record(tmp_path)))
    emit = run("emit", "signup", "--user", "u", "--dry-run", env={"ENGAGEMENT_CONFIG": str(cfg)})
    with pytest.raises(ConfigError) as worker:  # what `engagement worker` prints after its name
        Settings.load(env={"ENGAGEMENT_CONFIG": str(cfg)})
    message = f"config file {cfg} is not valid TOML: Invalid value (at line 1, column 12)"
    assert str(worker.value) == message
    assert (replay.returncode, replay.stderr) == (3, f"engagement replay: {message}\n")
    assert (emit.returncode, emit.stderr) == (3, f"engagement emit: {message}\n")
    # `engagement worker` prints the same line, before it needs Kafka
    worker_run = run("worker", "--config", str(cfg))
    assert (worker_run.returncode, worker_run.stderr) == (3, f"engagement worker: {message}\n")


# ---- help -----------------------------------------------------------------------------------


def _help(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        build_parser(argv[0] if argv[0] in COMMANDS else None).parse_args([*argv, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_help_has_one_exit_code_block(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(name, capsys=capsys)
    assert len(re.findall(r"^exit codes", text, re.M)) == 1, text


def test_global_help_lists_every_exit_code_of_docs_cli(capsys: pytest.CaptureFixture[str]) -> None:
    documented = re.findall(
        r"^\| ([0-9]+) \|", (Path(__file__).parents[2] / "docs/cli.md").read_text(), re.M
    )
    listed = re.findall(r"^  ([0-9]+)  ", EPILOG, re.M)
    assert listed == documented and "5" in listed


def test_emit_help_says_3_is_configuration_as_the_global_help_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help("emit", capsys=capsys)
    three = re.search(r"^  3  (.*)$", text, re.M)
    assert three and three.group(1).startswith("bad configuration")
    assert re.search(r"^  3  bad configuration", EPILOG, re.M)


# ---- emit -----------------------------------------------------------------------------------


def emit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    try:
        code = main(["emit", *args, "--bootstrap", "127.0.0.1:1", "--dry-run"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_an_out_of_range_field_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = emit(capsys, "Page-View", "--user", "u")
    assert code == 2
    assert "type 'Page-View' must match [a-z][a-z0-9_]{0,63}" in err
    code, err = emit(capsys, "page_view", "--user", "u", "--session", "s" * 129)
    assert code == 2 and "session_id must be a string of 1-128 characters" in err
    code, err = emit(capsys, "nps", "--user", "u", "--score", "9", "--touchpoint", "t" * 200)
    assert code == 2 and "touchpoint must be a string of 1-128 characters" in err


def test_the_too_late_hint_is_given_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = emit(capsys, "signup", "--user", "u", "--ts", "2020-01-01T00:00:00Z")
    assert code == 2 and "(too_late)" in err
    assert err.count("backfill") == 1, err
    assert "--record-ts" in err
    code, err = emit(capsys, "signup", "--user", "u", "--ts", "2999-01-01T00:00:00Z")
    assert code == 2 and "(future)" in err and err.count("backfill") == 1, err


def test_emit_takes_the_allowed_lateness_of_engagement_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # ts 10 days before the record timestamp
    ts_args = ("--ts", "1795168800000", "--record-ts", str(1795168800000 + 10 * 86400 * 1000))
    assert emit(capsys, "signup", "--user", "u", *ts_args)[0] == 2  # 48 h by default
    cfg = tmp_path / "engagement.toml"
    cfg.write_text("allowed_lateness_hours = 720\n")
    monkeypatch.setenv("ENGAGEMENT_CONFIG", str(cfg))
    code, err = emit(capsys, "signup", "--user", "u", *ts_args)
    assert code == 0, err
    code, err = emit(capsys, "signup", "--user", "u", *ts_args, "--lateness-hours", "1")
    assert code == 2 and "more than 1 hours" in err  # the flag wins over the file
    cfg.write_text("allowed_lateness_hours = 24\n")
    code, err = emit(capsys, "signup", "--user", "u", *ts_args, "--config", str(cfg))
    assert code == 2 and "more than 24 hours" in err
    cfg.write_text("allowed_lateness_hours = -1\n")
    code, err = emit(capsys, "signup", "--user", "u", *ts_args)
    assert code == 3 and "allowed_lateness_hours" in err
