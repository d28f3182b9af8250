"""`engagement simulate`: options, output file, errors."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from agents.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from engagement_cli.cli import main
from engagement_cli.cmd_simulate import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("7d", 7 * 86400),
        ("40d", 40 * 86400),
        ("1d12h", 36 * 3600),
        ("2w", 14 * 86400),
        ("1.5h", 5400),
        ("3600", 3600),
        ("0", 0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "h", "-1h", "-5", "1h-", "inf", "nan"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def _simulate(tmp_path: Path, name: str, *extra: str) -> Path:
    out = tmp_path / name
    argv = ["simulate", "--start", "2026-11-20T08:00:00Z", "--duration", "1h", "--rate", "3"]
    rc = main([*argv, "--users", "50", "--progress", "none", "--out", str(out), *extra])
    assert rc == EXIT_OK
    return out


def test_writes_kcat_lines_deterministically(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _simulate(tmp_path, "a.jsonl", "--seed", "5", "--partitions", "3")
    b = _simulate(tmp_path, "b.jsonl", "--seed", "5", "--partitions", "3")
    c = _simulate(tmp_path, "c.jsonl", "--seed", "6", "--partitions", "3")
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    lines = a.read_bytes().decode("utf-8").splitlines()
    assert len(lines) == 3 * 3600
    recs = [json.loads(line) for line in lines]
    assert recs[0]["ts"] == 1795161600000  # 2026-11-20T08:00:00Z
    assert {r["partition"] for r in recs} == {0, 1, 2}
    assert all(set(r) == {"topic", "partition", "offset", "ts", "key", "payload"} for r in recs)
    err = capsys.readouterr().err
    assert "10,800 records" in err and "--as-of 2026-11-20T08:59:59.666Z" in err


def test_max_records_and_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    rc = main(["simulate", "--max-records", "25", "--progress", "none", "--out", "-"])
    assert rc == EXIT_OK
    out = capsysbinary.readouterr().out
    assert len(out.splitlines()) == 25


def test_unreachable_kafka_names_the_address_and_the_fix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Nothing listens on port 1: the connection is refused at once.
    rc = main(["simulate", "--bootstrap", "127.0.0.1:1", "--max-records", "5"])
    assert rc == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "cannot reach Kafka at 127.0.0.1:1" in err and "make stack-up" in err


def test_prefix_is_for_kafka_only(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(["simulate", "--prefix", "t.", "--out", str(tmp_path / "x.jsonl")])
    assert rc == EXIT_USAGE
    assert "--prefix" in capsys.readouterr().err
    rc = main(["simulate", "--kafka", "--prefix", "bad prefix!", "--max-records", "1"])
    assert rc == EXIT_USAGE
    assert "illegal characters" in capsys.readouterr().err


def test_live_writes_records_when_their_time_comes(tmp_path: Path) -> None:
    out = tmp_path / "live.jsonl"
    before_ms = int(time.time() * 1000)
    t0 = time.monotonic()
    argv = ["simulate", "--live", "--duration", "1s", "--rate", "20", "--progress", "none"]
    assert main([*argv, "--out", str(out)]) == EXIT_OK
    elapsed = time.monotonic() - t0
    stamps = [json.loads(line)["ts"] for line in out.read_text().splitlines()]
    assert len(stamps) == 20
    assert before_ms <= stamps[0] and stamps[-1] - stamps[0] == 950
    assert 0.8 <= elapsed <= 10, elapsed


def test_an_output_is_required() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["simulate"])
    assert exc.value.code == EXIT_USAGE


def test_bad_start(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(["simulate", "--start", "yesterday", "--out", str(tmp_path / "x.jsonl")])
    assert rc == EXIT_USAGE
    assert "--start" in capsys.readouterr().err


def test_config_lateness(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("allowed_lateness_hours = 0\n")
    out = str(tmp_path / "x.jsonl")
    assert main(["simulate", "--config", str(bad), "--out", out]) == EXIT_CONFIG
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'\n")
    assert main(["simulate", "--config", str(unknown), "--out", out]) == EXIT_CONFIG
    good = tmp_path / "good.toml"
    good.write_text("allowed_lateness_hours = 2\n")
    _simulate(tmp_path, "y.jsonl", "--config", str(good))
