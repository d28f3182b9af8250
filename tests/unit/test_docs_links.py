"""The docs are self-contained: every file a README or docs page links to or names (`*.md`, and
repository paths such as `streams/topics.py`) is in the repository; none points outside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [REPO / "README.md", REPO / "CHANGELOG.md", *(REPO / "docs").glob("*.md"),
     *(REPO / "docs").glob("*/*.md"), *(REPO / "bench").glob("*.md"), REPO / "sdk" / "README.md"]
)  # fmt: skip
TOP = (
    "agents",
    "engagement_cli",
    "streams",
    "native",
    "deploy",
    "tests",
    "bench",
    "schemas",
    "docs",
    "sdk",
)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
MD_NAME = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")
REPO_PATH = re.compile(rf"(?<![\w/.-])((?:{'|'.join(TOP)})/[\w./-]*[\w])")


def _exists(page: Path, name: str) -> bool:
    name = name.split("::")[0]
    return any((base / name).exists() for base in (page.parent, REPO, REPO / "docs"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_named_file_exists(page: Path) -> None:
    if not page.exists():
        pytest.skip(f"{page.name} does not exist")
    text = page.read_text()
    assert "../shared" not in text and "DESIGN.md" not in text
    missing = set()
    for m in LINK.finditer(text):
        if not re.match(r"[a-z]+:", m.group(1)) and not _exists(page, m.group(1)):
            missing.add(m.group(1))
    for m in MD_NAME.finditer(text):
        if not _exists(page, m.group(1)):
            missing.add(m.group(1))
    for m in REPO_PATH.finditer(text):
        path = m.group(1)
        if "*" in path or "<" in path:
            continue
        if not _exists(page, path) and not _exists(page, path.rstrip(".")):
            missing.add(path)
    assert not missing, (
        f"{page.relative_to(REPO)} names files that are not in the repo: {sorted(missing)}"
    )
