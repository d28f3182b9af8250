"""The producer SDK as a distribution of its own (sdk/, issue 15 point 5), without installing it:
its dependencies are msgspec and aiokafka, it imports nothing of the worker, the worker runs
its validation (one definition, re-exported by streams/, not copied) and every way the project
is installed also installs it. tests/integration/test_sdk_venv.py installs it into a fresh
virtual environment and sends records with it."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

import engagement_sdk
from engagement_sdk import producer as sdk_producer

REPO = Path(__file__).resolve().parents[2]
SDK = REPO / "sdk"
SRC = SDK / "src" / "engagement_sdk"


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_sdk_depends_on_msgspec_and_aiokafka_only() -> None:
    project = tomllib.loads((SDK / "pyproject.toml").read_text())["project"]
    deps = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    assert deps == {"msgspec", "aiokafka"}
    assert project["name"] == "engagement-metrics-sdk"
    imported: set[str] = set()
    for path in SRC.glob("*.py"):
        imported |= _imported_roots(path)
    third_party = imported - set(sys.stdlib_module_names) - {"engagement_sdk", "__future__"}
    assert third_party == {"msgspec", "aiokafka"}, third_party
    # nothing of the worker's packages (which are not installed beside it)
    assert not imported & {"streams", "agents", "faust", "mode", "redis", "prometheus_client"}


def test_the_worker_pins_the_repositorys_sdk_version() -> None:
    sdk_version = tomllib.loads((SDK / "pyproject.toml").read_text())["project"]["version"]
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"engagement-metrics-sdk=={sdk_version}" in deps
    assert engagement_sdk.__version__ == sdk_version


def test_one_definition_of_validity() -> None:
    """The worker's modules re-export the SDK's objects: the same functions, classes and
    constants, not copies of them."""
    from engagement_sdk import builders, errors, partitioner, records, recordspec, timeutil
    from streams import errors as s_errors
    from streams import partitioner as s_partitioner
    from streams import records as s_records
    from streams import recordspec as s_recordspec
    from streams import sdk as s_sdk
    from streams import timeutil as s_timeutil

    assert s_records.decode_product is records.decode_product
    assert s_records.decode_survey is records.decode_survey
    assert s_records.time_reason is records.time_reason
    assert s_records._product_decoder is records._product_decoder
    assert s_records._KNOWN_TYPES is records._KNOWN_TYPES
    assert s_recordspec.PROPS_NAMES is recordspec.PROPS_NAMES
    assert s_recordspec.FIELDS is recordspec.FIELDS
    assert s_timeutil.parse_rfc3339 is timeutil.parse_rfc3339
    assert s_timeutil._HOUR_CACHE is timeutil._HOUR_CACHE
    assert s_partitioner.kafka_partition is partitioner.kafka_partition
    assert s_errors.Reject is errors.Reject is engagement_sdk.Reject
    assert issubclass(s_errors.ConfigError, engagement_sdk.EngagementError)
    for name in builders.__all__:
        assert getattr(s_sdk, name) is getattr(builders, name), name
    # and the re-exporting modules define no function or class of their own
    for mod in ("records", "recordspec", "partitioner", "sdk"):
        tree = ast.parse((REPO / "streams" / f"{mod}.py").read_text())
        defs = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert not defs, f"streams/{mod}.py defines {[d.name for d in defs]}: move it to sdk/"


def test_the_engine_rejects_what_the_sdk_rejects_with_the_same_error() -> None:
    from streams.records import decode_survey

    with pytest.raises(engagement_sdk.Reject) as by_sdk:
        engagement_sdk.nps("u-1", 11, record_ts=1_795_168_800_000)
    value = b'{"response_id":"r","survey":"nps","score":11,"user_id":"u-1","ts":1795168800000}'
    with pytest.raises(engagement_sdk.Reject) as by_engine:
        decode_survey(value)
    assert str(by_sdk.value) == str(by_engine.value) == "schema: nps score must be an integer 0-10"


def test_kafka_options_cannot_weaken_the_guarantees() -> None:
    kw = sdk_producer.producer_settings("k:9092", kafka_options={"security_protocol": "SSL"})
    assert kw["security_protocol"] == "SSL"
    assert kw["acks"] == "all" and kw["enable_idempotence"] is True
    for bad in ({"acks": 1}, {"enable_idempotence": False}, {"request_timeout_ms": 1000}):
        with pytest.raises(ValueError, match="may not set"):
            sdk_producer.Producer("k:9092", kafka_options=bad)


def test_the_project_hints_name_its_flags_and_the_sdks_do_not() -> None:
    from engagement_cli.producer import Producer, SyncProducer

    assert "--bootstrap" in Producer.unreachable_hint
    assert "--" not in sdk_producer.Producer.unreachable_hint
    assert SyncProducer.producer_class is Producer
    assert sdk_producer.SyncProducer.producer_class is sdk_producer.Producer


def test_every_install_path_installs_the_sdk() -> None:
    """`make install` (hence .ci/run) installs sdk/ with the project in one pip command (the pin
    is met by the repository's copy), the bench extra too, and so does the image."""
    makefile = (REPO / "Makefile").read_text()
    installs = [ln for ln in makefile.splitlines() if "pip install" in ln and "'.[" in ln]
    assert installs and all("-e ./sdk -e '.[" in ln for ln in installs), installs
    assert re.search(r"^\$\(STAMP\):.*sdk/pyproject\.toml", makefile, re.MULTILINE)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^COPY sdk \./sdk$", dockerfile, re.MULTILINE)
    assert re.search(r"^RUN pip install \./sdk \. ", dockerfile, re.MULTILINE)
    assert "make test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("doc", ["sdk/README.md", "docs/producers.md"])
def test_the_documented_python_compiles_and_names_what_the_sdk_has(doc: str) -> None:
    """Every python block of the SDK's docs parses, and every `sdk.NAME` it uses exists
    (sdk/README.md's broker examples also run: tests/integration/test_sdk_venv.py)."""
    text = (REPO / doc).read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert blocks
    for code in blocks:
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "sdk"
            ):
                assert hasattr(engagement_sdk, node.attr), f"{doc}: sdk.{node.attr}"
