"""docs/kafka.md ("Run it on your own Kafka") and the retention table of docs/operations.md
against the code: every topic that `engagement topics` and the worker create (streams/topics.py,
agents/internal.py) is listed with its partitions, cleanup policy and retention, and so is every
consumer group; nothing is listed that the code does not create."""

from __future__ import annotations

import re
from pathlib import Path

from agents.internal import INTERNAL_CONFIGS, Names, internal_topic_specs
from agents.settings import Settings
from streams.topics import BASE_CONFIGS, TopicSpec, topic_specs

DOCS = Path(__file__).resolve().parents[2] / "docs"


def created() -> dict[str, TopicSpec]:
    s = Settings()  # default prefix (empty) and app id, as the docs name them
    assert s.topics.input_partitions != s.topics.output_partitions
    return {t.name: t for t in (*topic_specs(s.topics), *internal_topic_specs(s))}


def expected_row(spec: TopicSpec) -> tuple[str, str, str]:
    s = Settings()
    kind = "input" if spec.partitions == s.topics.input_partitions else "output"
    policy = spec.configs.get("cleanup.policy", "delete")
    retention = "(compacted)" if policy == "compact" else spec.configs["retention.ms"]
    return kind, policy, retention


def table(text: str, header: str) -> list[list[str]]:
    """The rows of the markdown table whose header line starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(header))
    rows = []
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    return rows


def test_kafka_md_lists_every_topic_the_code_creates() -> None:
    rows = table((DOCS / "kafka.md").read_text(), "| topic | partitions |")
    documented = {r[0].strip("`"): tuple(r[1:4]) for r in rows}
    specs = created()
    assert set(documented) == set(specs), "docs/kafka.md topics differ from the code"
    wrong = {n: (documented[n], expected_row(s)) for n, s in specs.items()
             if documented[n] != expected_row(s)}  # fmt: skip
    assert not wrong, wrong


def test_kafka_md_gives_the_configs_and_groups() -> None:
    text = (DOCS / "kafka.md").read_text()
    for k, v in {
        **BASE_CONFIGS,
        "max.message.bytes": INTERNAL_CONFIGS["max.message.bytes"],
    }.items():
        assert f"`{k}={v}`" in text, k
    groups = {r[0].strip("`") for r in table(text, "| group |")}
    n = Names.of(Settings())
    assert groups == {n.intake_group, n.app_group}


def test_operations_md_retention_table_matches_the_code() -> None:
    rows = table((DOCS / "operations.md").read_text(), "| topics | cleanup.policy |")
    specs = created()
    seen = set()
    for names, policy, retention in rows:
        for name in re.findall(r"`([^`]+)`", names):
            name = name.replace("<app>", "engagement")
            spec = specs[name]
            assert policy == spec.configs.get("cleanup.policy", "delete"), name
            assert retention == spec.configs.get("retention.ms", ""), name
            seen.add(name)
    assert seen == set(specs)
    assert "Kafka's defaults (7 days)" not in (DOCS / "operations.md").read_text()
