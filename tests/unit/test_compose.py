"""docker-compose.yml is checked without Docker: against the Compose Specification's JSON schema
(vendored in tests/data/compose-spec.json), for host paths that exist, and for `engagement`
commands that the CLI declares."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agents.cli import COMMANDS

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
SCHEMA_FILE = REPO / "tests" / "data" / "compose-spec.json"

# Sub-commands that docker-compose.yml (or the Dockerfile) already runs but agents/cli.py does
# not declare yet. Shrink this set as they land: test_planned_commands_are_still_planned fails
# once one of them is declared, as a reminder.
PLANNED_COMMANDS: frozenset[str] = frozenset()


def _load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml must be a mapping"
    return data


def _load_schema() -> dict[str, Any]:
    # The schema declares JSON Schema draft-07 (under an id that jsonschema does not map).
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert "draft-07" in schema["$schema"]
    return schema


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_compose()


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose.get("services")
    assert isinstance(services, dict) and services, "no services in docker-compose.yml"
    return services


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = _load_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(compose),
        key=lambda e: [str(p) for p in e.absolute_path],
    )
    messages = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
    assert not messages, "docker-compose.yml is not valid Compose:\n" + "\n".join(messages)


def test_the_schema_rejects_an_invalid_file() -> None:
    """The vendored schema really validates (not an empty or permissive schema)."""
    validator = jsonschema.Draft7Validator(_load_schema())
    assert not validator.is_valid({"services": {"x": {"imagee": "typo"}}})
    assert not validator.is_valid({"services": {"x": {"ports": "not-a-list"}}})


def _bind_sources(service: dict[str, Any]) -> list[str]:
    """Host paths bind-mounted into a service (short and long volume syntax)."""
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                sources.append(source)
        elif isinstance(volume, dict) and volume.get("type") == "bind":
            sources.append(str(volume["source"]))
    return sources


def test_every_bind_mounted_host_path_exists_in_the_repo(compose: dict[str, Any]) -> None:
    checked = 0
    for name, service in _services(compose).items():
        for source in _bind_sources(service):
            assert source.startswith("./"), (
                f"service {name}: bind mount {source!r} must be a path inside the repo (./...)"
            )
            path = (REPO / source).resolve()
            assert path.is_relative_to(REPO), f"service {name}: {source!r} leaves the repo"
            assert path.exists(), f"service {name}: bind-mounted {source!r} does not exist"
            checked += 1
    assert checked, "expected the deploy/ configs to be bind-mounted"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in _services(compose).items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and not volume.startswith((".", "/", "~")):
                assert volume.split(":", 1)[0] in declared, f"service {name}: {volume!r}"


def test_build_contexts_and_dockerfiles_exist(compose: dict[str, Any]) -> None:
    for name, service in _services(compose).items():
        build = service.get("build")
        if build is None:
            continue
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert (REPO / context / dockerfile).is_file(), f"service {name}: no {dockerfile}"


def _engagement_subcommand(command: Any) -> str | None:
    """The sub-command of an `engagement ...` command (list or string form), else None."""
    words = command if isinstance(command, list) else str(command or "").split()
    if len(words) >= 2 and words[0] == "engagement":
        return str(words[1])
    return None


def _dockerfile_command() -> Any:
    match = re.search(r"^CMD\s+(\[.*\])\s*$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "the Dockerfile has no CMD in exec form"
    return yaml.safe_load(match.group(1))


def test_engagement_commands_are_declared_or_planned(compose: dict[str, Any]) -> None:
    used: dict[str, str] = {}
    for name, service in _services(compose).items():
        sub = _engagement_subcommand(service.get("command"))
        if sub is not None:
            used[f"service {name}"] = sub
    sub = _engagement_subcommand(_dockerfile_command())
    if sub is not None:
        used["Dockerfile CMD"] = sub
    assert used, "expected the worker and topics services to run `engagement` commands"
    for where, sub in used.items():
        assert sub in COMMANDS or sub in PLANNED_COMMANDS, (
            f"{where} runs `engagement {sub}`, which agents/cli.py does not declare "
            f"(declared: {sorted(COMMANDS)}; planned: {sorted(PLANNED_COMMANDS)})"
        )


def test_planned_commands_are_still_planned() -> None:
    landed = PLANNED_COMMANDS & COMMANDS.keys()
    assert not landed, (
        f"{sorted(landed)} now declared in agents/cli.py: remove from PLANNED_COMMANDS "
        "in tests/unit/test_compose.py"
    )


def _pinned_local_kafka_version() -> str:
    text = (REPO / "deploy" / "local" / "lib.sh").read_text(encoding="utf-8")
    match = re.search(r'KAFKA_VERSION="\$\{KAFKA_VERSION:-([0-9.]+)\}"', text)
    assert match, "deploy/local/lib.sh pins no KAFKA_VERSION"
    return match.group(1)


def test_compose_runs_the_same_kafka_as_the_local_stack(compose: dict[str, Any]) -> None:
    version = _pinned_local_kafka_version()
    image = _services(compose)["kafka"]["image"]
    assert image == f"apache/kafka:{version}"
    pom = (REPO / "deploy" / "local" / "kafka" / "pom.xml").read_text(encoding="utf-8")
    assert f"<kafka.version>{version}</kafka.version>" in pom


def test_long_running_services_are_restarted_by_compose(compose: dict[str, Any]) -> None:
    """docs/operations.md ("Faults we test"): a worker that dies (SIGKILL, OOM, exit 1) is
    restarted by its supervisor, and so are the broker and Redis; one-shot jobs are not."""
    services = _services(compose)
    for name in ("worker", "kafka", "redis"):
        assert services[name].get("restart") in ("always", "unless-stopped"), name
    assert services["topics"].get("restart") == "no"


def test_the_image_builds_the_compiled_core() -> None:
    """The Dockerfile (no Docker engine here, so read): a `core` stage compiles native/ into a
    wheel with maturin on a Rust image; the runtime stage installs it and checks at build time
    that the live worker can use it; every COPY source exists and is not .dockerignored."""
    text = (REPO / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.replace("\\\n", " ").splitlines()]
    stages = [ln.split() for ln in lines if ln.upper().startswith("FROM ")]
    assert [s[-1] for s in stages if len(s) == 4] == ["core"], stages
    assert stages[0][1].startswith("rust:") and stages[-1][1].startswith("python:3.11")
    rust = tuple(int(x) for x in stages[0][1].split(":")[1].split("-")[0].split(".")[:2])
    assert rust >= (1, 80), rust
    assert any("maturin build" in ln and "native/Cargo.toml" in ln for ln in lines)
    runtime = lines[lines.index(next(ln for ln in lines if ln.startswith("FROM python"))) :]
    assert any(ln.startswith("COPY --from=core /wheels") for ln in runtime)
    install = next(ln for ln in runtime if ln.startswith("RUN pip install"))
    assert "engagement_native-" in install and "available()" in install
    ignored = {ln.strip().rstrip("/") for ln in (REPO / ".dockerignore").read_text().splitlines()}
    for ln in lines:
        words = ln.split()
        if words and words[0] == "COPY" and not words[1].startswith("--from"):
            for src in words[1:-1]:
                assert (REPO / src).exists(), f"COPY {src}: not in the repository"
                assert src.rstrip("/") not in ignored, f"COPY {src}: .dockerignored"
