"""`engagement replay` as a user runs it: output, exit codes, --rejects, --partitions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.unit.records_builder import ans, ev, line

T = "2026-11-20T12:00:00Z"


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "engagement_cli", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def sample(tmp_path: Path) -> Path:
    p = tmp_path / "in.jsonl"
    lines = [
        ev("1", "signup", "a", "2026-11-20T10:00:00Z"),
        ev("2", "page_view", "b", "2026-11-20T10:00:00Z", session_id="s"),
        ans("3", "nps", 3, "a", "2026-11-20T11:30:00Z"),
        line("product-events", "{broken", 1795168800000, key="a", partition=0, offset=1),
    ]
    p.write_bytes(b"\n".join(lines) + b"\n")
    return p


def test_replay_prints_the_snapshot(tmp_path: Path) -> None:
    p = sample(tmp_path)
    r = run("replay", "--as-of", T, str(p))
    assert r.returncode == 0, r.stderr
    snap = json.loads(r.stdout)
    assert snap["as_of"] == T
    assert snap["dau"] == 2 and snap["accepted"] == 3
    assert snap["rejected"]["bad_json"] == 1
    assert snap["churn_signals_1h"]["nps_detractor"] == 1
    assert b"records" in r.stderr  # progress went to stderr, not stdout


def test_stdin_partitions_and_rejects(tmp_path: Path) -> None:
    p = sample(tmp_path)
    rej = tmp_path / "rejects.jsonl"
    one = run("replay", "--as-of", T, "--compact", "-", stdin=p.read_bytes())
    many = run(
        "replay", "--as-of", T, "--compact", "--partitions", "4", "--rejects", str(rej), str(p)
    )
    assert one.returncode == 0 and many.returncode == 0
    assert json.loads(one.stdout) == json.loads(many.stdout)
    rows = [json.loads(x) for x in rej.read_text().splitlines()]
    assert rows == [
        {
            "reason": "bad_json",
            "detail": rows[0]["detail"],
            "topic": "product-events",
            "partition": 0,
            "offset": 1,
            "key": "a",
            "ts": 1795168800000,
            "payload": "{broken",
        }
    ]


def test_config_file(tmp_path: Path) -> None:
    p = sample(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text('timezone = "Asia/Tokyo"\ninactive_events = ["impression", "page_view"]\n')
    r = run("replay", "--config", str(cfg), "--as-of", T, str(p))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["dau"] == 1  # page_view no longer counts as activity


def test_exit_codes(tmp_path: Path) -> None:
    p = sample(tmp_path)
    bad_as_of = run("replay", "--as-of", "yesterday", str(p))
    assert bad_as_of.returncode == 2 and b"RFC 3339" in bad_as_of.stderr
    missing = run("replay", "--as-of", T, str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 4 and b"does not exist" in missing.stderr
    cfg = tmp_path / "bad.toml"
    cfg.write_text('timezone = "Mars/Olympus"\n')
    bad_cfg = run("replay", "--config", str(cfg), "--as-of", T, str(p))
    assert bad_cfg.returncode == 3 and b"IANA" in bad_cfg.stderr
    cfg.write_text("colour = 1\n")
    unknown = run("replay", "--config", str(cfg), "--as-of", T, str(p))
    assert unknown.returncode == 3 and b"unknown key" in unknown.stderr
    cfg.write_text("this is = not toml = at all")
    not_toml = run("replay", "--config", str(cfg), "--as-of", T, str(p))
    assert not_toml.returncode == 3 and b"TOML" in not_toml.stderr
    no_cfg = run("replay", "--config", str(tmp_path / "none.toml"), "--as-of", T, str(p))
    assert no_cfg.returncode == 3
    usage = run("replay", "--as-of", T)
    assert usage.returncode == 2


def test_help_lists_commands() -> None:
    r = run("--help")
    assert r.returncode == 0
    for name in (b"replay", b"simulate", b"topics", b"exit codes"):
        assert name in r.stdout
    h = run("replay", "--help")
    assert b"examples:" in h.stdout and b"--partitions" in h.stdout
