"""The producer SDK installed the way a producer installs it (issue 15 point 5): sdk/ alone into a
fresh virtual environment (pip, from the repository path; only PyPI for msgspec and aiokafka),
without the worker's dependencies; the examples of sdk/README.md run there as written, outside
the repository, against the real broker; the records they sent are on the partition Kafka's
default partitioner picks for their user (as a librdkafka producer told to use
`partitioner=murmur2_random` puts them, the advice of docs/producers.md), and the engine
accepts every one of them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import venv
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams import sdk
from streams.config import Config
from streams.partitioner import kafka_partition
from streams.replay import replay_lines
from streams.timeutil import format_instant
from streams.topics import DEFAULT_INPUT_PARTITIONS
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SDK = REPO / "sdk"
# Distributions of the worker that a producer must not get with the SDK.
WORKER_ONLY = ("faust-streaming", "redis", "prometheus-client", "rocksdict", "engagement-metrics")
WORKER_MODULES = {"faust", "mode", "redis", "prometheus_client", "rocksdict", "streams", "agents"}


@pytest.fixture(scope="module")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv (no system site-packages) with sdk/ installed from the repo."""
    env_dir = tmp_path_factory.mktemp("sdk-venv") / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    r = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(SDK)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return python


def _run(python: Path, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run the venv's python isolated (-I: neither the repository, PYTHONPATH nor user site)."""
    r = subprocess.run(
        [str(python), "-I", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def test_the_sdk_installs_without_the_workers_dependencies(
    sdk_python: Path, tmp_path: Path
) -> None:
    out = _run(sdk_python, "-m", "pip", "list", "--format", "json", cwd=tmp_path)
    installed = {d["name"].lower().replace("_", "-") for d in json.loads(out)}
    assert {"engagement-metrics-sdk", "msgspec", "aiokafka"} <= installed
    assert not installed & set(WORKER_ONLY), installed
    probe = (
        "import json, sys\n"
        "from importlib.metadata import requires\n"
        "import engagement_sdk\n"
        "print(json.dumps({'modules': sorted(sys.modules), 'file': engagement_sdk.__file__,\n"
        "                  'requires': requires('engagement-metrics-sdk')}))\n"
    )
    seen = json.loads(_run(sdk_python, "-c", probe, cwd=tmp_path))
    roots = {m.split(".")[0] for m in seen["modules"]}
    assert not roots & WORKER_MODULES, roots & WORKER_MODULES
    assert "aiokafka" not in roots  # imported when a producer starts, not with the package
    assert "asyncio" not in roots  # the producer client is imported on first use
    assert not seen["file"].startswith(str(REPO))  # the installed copy, not the repository's
    assert sorted(re.split(r"[<>=]", r)[0] for r in seen["requires"]) == ["aiokafka", "msgspec"]


def _readme_examples() -> list[str]:
    """The python blocks of sdk/README.md that talk to a broker (they read KAFKA_BOOTSTRAP)."""
    text = (SDK / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return [b for b in blocks if "KAFKA_BOOTSTRAP" in b]


async def _consume_all(bootstrap: str, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(DEFAULT_INPUT_PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + 60
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "the records did not come back in 60 s"
            for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                out.extend(msgs)
        return out
    finally:
        await consumer.stop()


def test_the_readme_examples_send_valid_records_to_the_users_partitions(
    sdk_python: Path, stack: Stack, topics: dict[str, str], topic_prefix: str, tmp_path: Path
) -> None:
    examples = _readme_examples()
    assert len(examples) == 2, "sdk/README.md: a SyncProducer and an asyncio example"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "ENGAGEMENT_TOPIC_PREFIX": topic_prefix,
    }
    outputs = []
    for i, code in enumerate(examples):
        script = tmp_path / f"example_{i}.py"  # outside the repository
        script.write_text(code)
        outputs.append(_run(sdk_python, str(script), cwd=tmp_path, env=env))
    assert "rejected: schema: nps score must be an integer 0-10" in outputs[0]
    for out in outputs:
        assert re.search(rf"sent to {re.escape(topic_prefix)}\S+ partition \d+ offset \d+", out)

    # a librdkafka producer set as docs/producers.md says (partitioner=murmur2_random) sends a
    # key action of every user of the examples: it must pick the SDK's partitions (recorded
    # below: every record, whoever sent it, is on the partition of its key)
    from confluent_kafka import Producer

    users = [f"u-{i}" for i in range(100)]  # u-42 of example 1 among them
    rd = Producer({"bootstrap.servers": stack.kafka_bootstrap, "partitioner": "murmur2_random"})
    for u in users:
        rec = sdk.key_action(u, event_id=f"rd-{u}")
        rd.produce(topics[rec.topic], rec.value, key=rec.key, timestamp=rec.timestamp_ms)
    assert rd.flush(30) == 0

    product = asyncio.run(_consume_all(stack.kafka_bootstrap, topics["product-events"]))
    survey = asyncio.run(_consume_all(stack.kafka_bootstrap, topics["survey-answers"]))
    # example 1: signup, page_view, purchase and an NPS answer; example 2: 100 key actions and a
    # CSAT answer; then the librdkafka producer's 100 key actions
    assert (len(product), len(survey)) == (103 + len(users), 2)
    for msg in product + survey:
        assert msg.partition == kafka_partition(msg.key, DEFAULT_INPUT_PARTITIONS), msg.key
        assert json.loads(msg.value)["user_id"] == msg.key.decode()
    assert len({m.partition for m in product}) == DEFAULT_INPUT_PARTITIONS  # keys spread

    # and the engine accepts every record as it was stored, with its key and timestamp
    lines = [
        json.dumps(
            {
                "topic": base,
                "partition": m.partition,
                "offset": m.offset,
                "ts": m.timestamp,
                "key": m.key.decode(),
                "payload": m.value.decode(),
            }
        ).encode()
        for base, msgs in (("product-events", product), ("survey-answers", survey))
        for m in msgs
    ]
    as_of = format_instant((time.time_ns() // 1_000_000 + 60_000) * 1_000_000)
    snap = replay_lines(lines, Config(), as_of)
    assert not any(snap["rejected"].values()), snap["rejected"]
    assert snap["accepted"] == len(lines) == 105 + len(users) and snap["duplicates"] == 0
    assert snap["mau"] == len(users) and snap["orders_90d"] == 1 and snap["nps_responses_30d"] == 1
