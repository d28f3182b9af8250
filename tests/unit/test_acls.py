"""The Kafka ACLs per component (engagement_cli/acls.py): what each may do, matched the way Kafka's
authorizer matches them, and the table of docs/operations.md kept in step with the code.
tests/integration/test_security.py checks them against a real broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.internal import TABLES, Names, internal_topic_specs
from agents.settings import Settings
from engagement_cli.acls import (
    COMPONENTS,
    bindings,
    grants,
    kafka_acls_commands,
    main,
    markdown_table,
)
from streams.topics import INPUT_TOPICS, OUTPUT_TOPICS, TopicSettings

REPO = Path(__file__).resolve().parents[2]
USERS = {c: c for c in COMPONENTS}
IMPLIES_DESCRIBE = {"Read", "Write", "Delete", "Alter"}


def may(component: str, resource: str, name: str, op: str, prefix: str, app: str) -> bool:
    """Whether the component's grants allow `op` on the resource (Kafka's matching: a literal
    name is equal, a prefixed one starts the name; Read, Write, ... imply Describe)."""
    for g in grants(prefix, app):
        if g.component != component or g.resource != resource:
            continue
        if not any(name == n if g.pattern == "literal" else name.startswith(n) for n in g.names):
            continue
        if op in g.operations or (op == "Describe" and IMPLIES_DESCRIBE & set(g.operations)):
            return True
    return False


@pytest.mark.parametrize(("prefix", "app"), [("", "engagement"), ("staging.", "eu-app")])
def test_each_component_may_do_what_it_does_and_no_more(prefix: str, app: str) -> None:
    s = Settings(app_id=app, topics=TopicSettings(prefix=prefix))
    n = Names.of(s)
    inputs = [n.topic(t) for t in INPUT_TOPICS]
    outputs = [n.topic(t) for t in OUTPUT_TOPICS]
    internal = [spec.name for spec in internal_topic_specs(s)]
    assert {n.changelog(t) for t in TABLES} <= set(internal)
    leader = f"{n.app_group}-__assignor-__leader"  # Faust's
    yes = [
        *[("worker", "topic", t, "Read") for t in inputs],
        *[("worker", "topic", t, "Write") for t in outputs],
        *[("worker", "topic", t, op) for t in [*internal, leader] for op in ("Read", "Write", "Create")],
        *[("worker", "group", g, "Read") for g in (n.app_group, n.intake_group)],
        *[("producer", "topic", t, op) for t in inputs for op in ("Write", "Describe")],
        ("cli", "topic", n.batches, "Write"),
        ("cli", "topic", n.dead_letters, "Read"),
        *[("cli", "topic", t, op) for t in inputs for op in ("Write", "Describe")],
        ("cli", "topic", n.account_facts, "Describe"),
        ("cli", "topic", n.churn_signals, "Describe"),
    ]  # fmt: skip
    for c, r, name, op in yes:
        assert may(c, r, name, op, prefix, app), (c, r, name, op)
    no = [
        *[("producer", "topic", t, op) for t in [*outputs, *internal] for op in ("Write", "Read", "Describe")],
        *[("producer", "topic", t, "Read") for t in inputs],
        *[("producer", "group", g, "Read") for g in (n.app_group, n.intake_group)],
        *[("worker", "topic", t, "Write") for t in inputs],
        *[("worker", "topic", t, "Read") for t in outputs],
        *[("worker", "topic", t, "Create") for t in [*inputs, *outputs]],
        *[("cli", "topic", t, op) for t in internal for op in ("Read", "Create")],
        *[("cli", "topic", n.changelog(t), "Describe") for t in TABLES],
        ("cli", "topic", n.churn_signals, "Read"),
        *[("cli", "group", g, "Read") for g in (n.app_group, n.intake_group)],
        # another app or deployment on the same cluster
        ("worker", "topic", n.topic(f"{app}2-batches"), "Read"),
        ("worker", "group", n.topic(f"{app}2"), "Read"),
    ]  # fmt: skip
    for c, r, name, op in no:
        assert not may(c, r, name, op, prefix, app), (c, r, name, op)


def test_bindings_are_one_per_operation_and_name() -> None:
    b = bindings({"worker": "w", "producer": "p", "cli": "c"}, "staging.", "app")
    assert (
        len(b)
        == len(set(b))
        == sum(len(g.names) * len(g.operations) for g in grants("staging.", "app"))
    )
    assert {x[3] for x in b} == {"User:w", "User:p", "User:c"}
    assert all(x[1].startswith("staging.") for x in b)
    producer = sorted((x[1], x[5]) for x in b if x[3] == "User:p")
    assert producer == [("staging.product-events", 4), ("staging.survey-answers", 4)]  # Write


def test_kafka_acls_commands() -> None:
    lines = kafka_acls_commands(USERS, "staging.", "app")
    assert len(lines) == len(grants("staging.", "app"))
    prefixed = [x for x in lines if "--resource-pattern-type prefixed" in x]
    assert prefixed == [
        "kafka-acls.sh --bootstrap-server $KAFKA_BOOTSTRAP --command-config admin.properties --add "
        "--allow-principal User:worker --operation Read --operation Write --operation Create "
        "--topic staging.app- --resource-pattern-type prefixed"
    ]


def test_docs_list_the_acls_of_the_code() -> None:
    text = (REPO / "docs" / "operations.md").read_text()
    begin = text.index("<!-- acls:begin")
    block = text[text.index("\n", begin) + 1 : text.index("<!-- acls:end -->")]
    assert block.strip() == markdown_table(), (
        "run `python -m engagement_cli.acls --table` into docs"
    )


def test_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--table", "--prefix", "x."]) == 0
    assert "`x.engagement-batches`" in capsys.readouterr().out
    assert main(["--prefix", "bad prefix!"]) == 2
    assert main(["--app-id", "a", "--producer-user", "sdk"]) == 0
    assert "User:sdk --operation Write --topic product-events" in capsys.readouterr().out
