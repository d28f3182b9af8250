"""The pure parts of `engagement dead-letters`: header parsing, dedupe of at-least-once copies,
positions, and the export file round trip (bytes that are not UTF-8 survive it)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from engagement_cli.cmd_dead_letters import (
    counts,
    dedupe,
    from_record,
    parse_position,
    read_fix_file,
)


def _msg(
    partition: int, offset: int, reason: str, src_off: int, value: bytes | None
) -> SimpleNamespace:
    headers = [
        ("reason", reason.encode()),
        ("detail", b"why"),
        ("source-topic", b"p.product-events"),
        ("source-partition", b"3"),
        ("source-offset", str(src_off).encode()),
    ]
    return SimpleNamespace(partition=partition, offset=offset, headers=headers, key=b"u-1",
                           value=value, timestamp=1000)  # fmt: skip


def test_headers_become_fields() -> None:
    d = from_record(_msg(1, 7, "schema", 42, b"{}"))
    assert (d.position, d.reason, d.detail) == ("1:7", "schema", "why")
    assert (d.source_topic, d.source_partition, d.source_offset) == ("p.product-events", 3, 42)


def test_a_copy_written_twice_is_listed_once_and_counted_once() -> None:
    letters = [from_record(_msg(0, 5, "schema", 42, b"x")), from_record(_msg(0, 2, "schema", 42, b"x")),
               from_record(_msg(1, 0, "bad_json", 43, b"y"))]  # fmt: skip
    kept = dedupe(letters)
    assert [d.position for d in kept] == ["0:2", "1:0"]
    c = counts(kept)
    assert c["schema"] == 1 and c["bad_json"] == 1 and c["too_large"] == 0


@pytest.mark.parametrize("raw", ["3", "a:b", "1:2:3", "-1:4", ""])
def test_bad_positions_are_refused(raw: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_position(raw)


def test_export_line_round_trip_keeps_non_utf8_bytes(tmp_path: Path) -> None:
    d = from_record(_msg(2, 9, "bad_json", 11, b"\xff\xfe{"))
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(d.as_json()) + "\n", encoding="ascii")
    back = read_fix_file(str(path))[(2, 9)]
    assert back.value == b"\xff\xfe{" and back.key == b"u-1" and back.source_offset == 11


def test_a_broken_fix_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"dead_letter": "0:1"}\n')
    with pytest.raises(ValueError, match=r"x.jsonl:1"):
        read_fix_file(str(path))
