"""docs/openapi.yaml against the code: a valid OpenAPI 3.1 document (openapi-spec-validator),
every route the worker serves is described and nothing else, each route's status codes are the
ones its view can answer (read from the source), and the schemas accept what the code builds."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate

from agents.health import at_risk_body, at_risk_rows
from streams.config import Config
from streams.replay import replay_lines
from streams.simulate import SimConfig, envelope_line, simulate

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "docs" / "openapi.yaml"
AGENTS = REPO / "agents"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return dict(yaml.safe_load(SPEC_PATH.read_text()))


def _pages() -> dict[str, tuple[ast.AsyncFunctionDef, Path]]:
    """Every `@app.page("/route")` view of the agents package."""
    out: dict[str, tuple[ast.AsyncFunctionDef, Path]] = {}
    for path in sorted(AGENTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                if (
                    isinstance(dec, ast.Call)
                    and isinstance(dec.func, ast.Attribute)
                    and dec.func.attr == "page"
                    and dec.args
                    and isinstance(dec.args[0], ast.Constant)
                ):
                    assert isinstance(node, ast.AsyncFunctionDef)
                    out[str(dec.args[0].value)] = (node, path)
    return out


def _method(path: Path, cls: str, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == name:
                    return item
    raise AssertionError(f"{cls}.{name} not found in {path}")


def _function(path: Path, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return node
    raise AssertionError(f"{name} not found in {path}")


def _ints(node: ast.AST) -> set[int]:
    """HTTP statuses an expression can be: a literal, or either branch of `a if c else b`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return {node.value} if 100 <= node.value <= 599 else set()
    if isinstance(node, ast.IfExp):
        return _ints(node.body) | _ints(node.orelse)
    return set()


def _statuses(view: ast.AsyncFunctionDef) -> set[int]:
    """Statuses a view answers: `status=` literals, `status = X if c else Y`, 200 for a response
    without a status, and what `gather` (agents/gather.py) returns when the view answers its status."""
    found: set[int] = set()
    for node in ast.walk(view):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "status" for t in node.targets
        ):
            found |= _ints(node.value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("json", "bytes", "text"):
                kws = {k.arg: k.value for k in node.keywords}
                if "status" not in kws:
                    found.add(200)
                else:
                    found |= _ints(kws["status"])
            if node.func.attr == "gather":
                gather = _function(AGENTS / "gather.py", "gather")
                for ret in ast.walk(gather):
                    if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Tuple):
                        found |= _ints(ret.value.elts[0])
    return found


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec)  # raises on an invalid document


def test_the_validator_rejects_a_broken_document(spec: dict[str, Any]) -> None:
    broken = {**spec, "paths": {"/snapshot": {"get": {"responses": {"200": {}}}}}}
    with pytest.raises(Exception, match="description"):
        validate(broken)


def test_every_route_served_is_described_and_vice_versa(spec: dict[str, Any]) -> None:
    served = set(_pages())
    assert {"/snapshot", "/partials", "/health", "/metrics", "/at-risk"} <= served
    assert set(spec["paths"]) == served


def test_status_codes_match_the_code(spec: dict[str, Any]) -> None:
    pages = _pages()
    mismatches = {}
    for route, (view, _path) in pages.items():
        in_code = _statuses(view)
        documented = {int(s) for s in spec["paths"][route]["get"]["responses"]}
        if in_code != documented:
            mismatches[route] = (sorted(in_code), sorted(documented))
    assert not mismatches, mismatches
    # the scan itself sees what we know is there
    assert _statuses(pages["/snapshot"][0]) == {200, 400, 422, 503}
    assert _statuses(pages["/health"][0]) == {200, 503}


def _validator(spec: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    root = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return jsonschema.Draft202012Validator(root)


def test_the_snapshot_schema_accepts_what_the_engine_builds(spec: dict[str, Any]) -> None:
    start = 1_795_168_800_000 - 10 * 86_400_000
    sim = SimConfig(start_ms=start, duration_s=10 * 86400, users=200, rate=3000 / (10 * 86400),
                    seed=3, partitions=2, bad_fraction=0.05)  # fmt: skip
    lines = [envelope_line(e) for e in simulate(sim)]
    snap = replay_lines(lines, Config(), "2026-11-20T12:00:00Z")
    assert snap["by_touchpoint"] and snap["dau"] > 0  # a rich snapshot, every part present
    snap["coverage"] = {"product-events/0": 17}
    v = _validator(spec, "Snapshot")
    errors = [e.message for e in v.iter_errors(snap)]
    assert not errors, errors[:5]
    for broken in (
        {k: x for k, x in snap.items() if k != "dau"},
        {**snap, "dau": "4"},
        {**snap, "new_key": 1},
        {**snap, "rejected": {"schema": 1}},
    ):
        assert not v.is_valid(broken)


def test_the_at_risk_schema_accepts_what_the_code_builds(spec: dict[str, Any]) -> None:
    rows = at_risk_rows([(b"acme", 12.5)], [b'{"recency": 0.1, "frequency": 0.2, "sentiment": 0.5, "as_of": "2026-11-20T12:00:00Z"}'])  # fmt: skip
    body = at_risk_body(1, rows)
    v = _validator(spec, "AtRisk")
    assert v.is_valid(body), [e.message for e in v.iter_errors(body)]
    assert not v.is_valid({**body, "threshold": 41})
