"""agents/membership.py: the member ids a worker notes for its next start."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from agents.membership import member_ids, remember, remembered


def test_noted_ids_are_read_back_and_bad_notes_ignored(tmp_path: Path) -> None:
    d = str(tmp_path / "data")
    assert remembered(d) == {}
    remember(d, {"app": "m-1", "app-intake": "m-2"})
    assert remembered(d) == {"app": "m-1", "app-intake": "m-2"}
    remember(d, {"app": "m-3"})
    assert remembered(d) == {"app": "m-3"}
    (tmp_path / "data" / "members.json").write_text("[1, 2]")
    assert remembered(d) == {}
    (tmp_path / "data" / "members.json").write_text("{not json")
    assert remembered(d) == {}
    (tmp_path / "data" / "members.json").write_text('{"app": "", "b": 3}')
    assert remembered(d) == {}


def test_member_ids_of_a_worker_without_consumers_yet() -> None:
    names = SimpleNamespace(app_group="app", intake_group="app-intake")
    coordinator = SimpleNamespace(member_id="m-9")
    bare = SimpleNamespace(
        app=SimpleNamespace(), names=names, intake=SimpleNamespace(consumer=None)
    )
    assert member_ids(bare) == {}
    thread = SimpleNamespace(_consumer=SimpleNamespace(_coordinator=coordinator))
    full = SimpleNamespace(
        app=SimpleNamespace(consumer=SimpleNamespace(_thread=thread)),
        names=names,
        intake=SimpleNamespace(
            consumer=SimpleNamespace(_coordinator=SimpleNamespace(member_id="m-8"))
        ),
    )
    assert member_ids(full) == {"app": "m-9", "app-intake": "m-8"}
