"""The Kafka ACLs of each component of a deployment (least privilege; docs/operations.md, "ACLs").

A deployment is a topic prefix and an app id (ENGAGEMENT_TOPIC_PREFIX, ENGAGEMENT_APP_ID). Its
components authenticate as principals of their own and get only what they use:

  worker    reads the input topics, writes dead-letters and churn-signals, owns the topics whose
            names start with `<prefix><app>-` (micro-batches, account facts, the tables'
            changelogs, Faust's leader topic: read, write, create) and its two consumer groups
            `<prefix><app>` and `<prefix><app>-intake`
  producer  writes the two input topics, nothing else (idempotent producers need no more: Kafka
            grants InitProducerId to a principal that may write to some topic)
  cli       `engagement forget` writes `<prefix><app>-batches`; `dead-letters` reads
            dead-letters and `--resend` writes the input topics; `snapshot --wait` reads the end
            offsets of the inputs and of `<prefix><app>-account-facts`; `topics --check`
            describes the four project topics. No consumer group.

Creating the project topics (`engagement topics`) and `engagement rebuild` (which deletes and
recreates the worker's topics and resets its groups) are an administrator's: a super user.

    python -m engagement_cli.acls                 # the kafka-acls.sh commands of this deployment
    python -m engagement_cli.acls --table         # the same as a Markdown table
    python -m engagement_cli.acls --apply         # create them (as an administrator; idempotent)
    python -m engagement_cli.acls --check         # exit 1 unless every one of them is in place

The bootstrap and the administrator's credentials come from the environment (KAFKA_BOOTSTRAP,
agents/security.py); the local secure stack applies them at start-up (deploy/local/secure.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from agents.internal import Names
from streams.errors import ConfigError
from streams.topics import (
    INPUT_TOPICS,
    TopicSettingsError,
    validate_prefix,
)

COMPONENTS = ("worker", "producer", "cli")
DEFAULT_APP_ID = "engagement"

# Kafka's wire codes (org.apache.kafka.common.acl / resource)
RESOURCE_TYPES = {"topic": 2, "group": 3, "cluster": 4, "transactional-id": 5}
PATTERN_TYPES = {"literal": 3, "prefixed": 4}
OPERATIONS = {
    "Read": 3,
    "Write": 4,
    "Create": 5,
    "Delete": 6,
    "Alter": 7,
    "Describe": 8,
    "DescribeConfigs": 10,
}
ALLOW = 3
ANY = 1


@dataclass(frozen=True, slots=True)
class Grant:
    """Operations that one component may do on some resources (or resource name prefixes)."""

    component: str
    resource: str  # a key of RESOURCE_TYPES
    pattern: str  # "literal" or "prefixed"
    names: tuple[str, ...]
    operations: tuple[str, ...]
    why: str


def grants(prefix: str = "", app_id: str = DEFAULT_APP_ID) -> tuple[Grant, ...]:
    """Every grant of a deployment, component by component (the table of docs/operations.md)."""
    validate_prefix(prefix)
    if not app_id:
        raise ConfigError("the app id must not be empty")
    n = Names(prefix, app_id)
    inputs = tuple(n.topic(t) for t in INPUT_TOPICS)
    return (
        Grant("worker", "topic", "literal", inputs, ("Read",), "the intake"),
        Grant("worker", "topic", "literal", (n.dead_letters, n.churn_signals), ("Write",),
              "its outputs"),
        Grant("worker", "topic", "prefixed", (n.topic(f"{app_id}-"),), ("Read", "Write", "Create"),
              "its internal topics and the tables' changelogs, created at start-up"),
        Grant("worker", "group", "literal", (n.app_group, n.intake_group), ("Read",),
              "Faust's consumer group and the intake's"),
        Grant("producer", "topic", "literal", inputs, ("Write",), "sending events and answers"),
        Grant("cli", "topic", "literal", (n.batches,), ("Write",), "`forget` sends its request"),
        Grant("cli", "topic", "literal", (n.dead_letters,), ("Read",), "`dead-letters`"),
        Grant("cli", "topic", "literal", inputs, ("Write",),
              "`dead-letters --resend`; `snapshot --wait` reads their end offsets"),
        Grant("cli", "topic", "literal", (n.account_facts,), ("Describe",),
              "`snapshot --wait` reads its end offsets"),
        Grant("cli", "topic", "literal", (n.churn_signals,), ("Describe",), "`topics --check`"),
    )  # fmt: skip


def markdown_table(prefix: str = "", app_id: str = DEFAULT_APP_ID) -> str:
    """The grants as the Markdown table of docs/operations.md."""
    rows = [
        "| principal | resource | pattern | names | operations | for |",
        "|---|---|---|---|---|---|",
    ]
    for x in grants(prefix, app_id):
        names = ", ".join(f"`{name}`" for name in x.names)
        ops = ", ".join(x.operations)
        rows.append(f"| {x.component} | {x.resource} | {x.pattern} | {names} | {ops} | {x.why} |")
    return "\n".join(rows)


def kafka_acls_commands(
    users: dict[str, str], prefix: str = "", app_id: str = DEFAULT_APP_ID
) -> list[str]:
    """The grants as `kafka-acls.sh` command lines (Kafka's own tool)."""
    out = []
    for x in grants(prefix, app_id):
        ops = " ".join(f"--operation {op}" for op in x.operations)
        res = " ".join(f"--{x.resource} {name}" for name in x.names)
        pattern = " --resource-pattern-type prefixed" if x.pattern == "prefixed" else ""
        out.append(
            "kafka-acls.sh --bootstrap-server $KAFKA_BOOTSTRAP --command-config admin.properties "
            f"--add --allow-principal User:{users[x.component]} {ops} {res}{pattern}"
        )
    return out


Binding = tuple[int, str, int, str, str, int, int]


def bindings(
    users: dict[str, str], prefix: str = "", app_id: str = DEFAULT_APP_ID
) -> list[Binding]:
    """Kafka's ACL bindings (resource type, name, pattern type, principal, host, operation,
    permission) of the grants: one per operation."""
    return [
        (
            RESOURCE_TYPES[x.resource],
            name,
            PATTERN_TYPES[x.pattern],
            f"User:{users[x.component]}",
            "*",
            OPERATIONS[op],
            ALLOW,
        )
        for x in grants(prefix, app_id)
        for name in x.names
        for op in x.operations
    ]


class AclError(Exception):
    """Kafka refused to create or list ACLs."""


async def apply(bootstrap: str, wanted: list[Binding], timeout: float = 30.0) -> int:
    """Create the bindings (Kafka ignores one that exists already); the number sent."""
    from aiokafka.errors import for_code
    from aiokafka.protocol.admin import CreateAclsRequest_v1
    from aiokafka.protocol.api import Request

    from agents.admin import AdminError, connect

    class _CreateAcls(Request[CreateAclsRequest_v1]):
        API_KEY = 30

        def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
            return request_struct_class(list(wanted))

    try:
        client = await connect(bootstrap, timeout)
    except AdminError as exc:
        raise AclError(str(exc)) from None
    try:
        resp = await client._send_request(_CreateAcls())
    finally:
        await client.close()
    errors = [
        f"{for_code(code).__name__}: {msg or ''}".strip()
        for code, msg in resp.creation_responses
        if code != 0
    ]
    if errors:
        raise AclError(f"{len(errors)} of {len(wanted)} ACLs not created: {errors[0]}")
    return len(wanted)


async def existing(
    bootstrap: str, principals: Sequence[str], timeout: float = 30.0
) -> set[Binding]:
    """The ALLOW bindings of these principals that Kafka holds."""
    from aiokafka.errors import for_code
    from aiokafka.protocol.admin import DescribeAclsRequest

    from agents.admin import AdminError, connect

    try:
        client = await connect(bootstrap, timeout)
    except AdminError as exc:
        raise AclError(str(exc)) from None
    out: set[Binding] = set()
    try:
        for principal in principals:
            req = DescribeAclsRequest(ANY, None, ANY, principal, None, ANY, ANY)
            resp = await client._send_request(req)
            if resp.error_code != 0:
                raise AclError(
                    f"cannot list the ACLs: {for_code(resp.error_code).__name__}: "
                    f"{resp.error_message or ''}"
                )
            for rtype, name, ptype, acls in resp.resources:
                for p, host, op, perm in acls:
                    out.add((rtype, name, ptype, p, host, op, perm))
    finally:
        await client.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from agents.admin import default_bootstrap

    p = argparse.ArgumentParser(
        prog="python -m engagement_cli.acls",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bootstrap", default=None, help="Kafka (env KAFKA_BOOTSTRAP)")
    p.add_argument("--prefix", default=None, help="topic prefix (env ENGAGEMENT_TOPIC_PREFIX)")
    p.add_argument("--app-id", default=None, help="the app id (env ENGAGEMENT_APP_ID)")
    for c in COMPONENTS:
        p.add_argument(f"--{c}-user", default=c, metavar="NAME", help=f"the {c}'s principal")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--apply", action="store_true", help="create the ACLs (idempotent)")
    what.add_argument("--check", action="store_true", help="exit 1 unless all are in place")
    what.add_argument("--table", action="store_true", help="print them as a Markdown table")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
    args = p.parse_args(argv)
    prefix = os.environ.get("ENGAGEMENT_TOPIC_PREFIX", "") if args.prefix is None else args.prefix
    app_id = args.app_id or os.environ.get("ENGAGEMENT_APP_ID") or DEFAULT_APP_ID
    users = {c: getattr(args, f"{c}_user") for c in COMPONENTS}
    try:
        wanted = bindings(users, prefix, app_id)
    except (ConfigError, TopicSettingsError) as exc:
        print(f"acls: {exc}", file=sys.stderr)
        return 2
    if args.table:
        print(markdown_table(prefix, app_id))
        return 0
    if not (args.apply or args.check):
        print("\n".join(kafka_acls_commands(users, prefix, app_id)))
        return 0
    import logging

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    bootstrap = args.bootstrap or default_bootstrap()
    try:
        if args.apply:
            sent = asyncio.run(apply(bootstrap, wanted, args.timeout))
            print(f"acls: {sent} ACLs in place for {', '.join(sorted(set(users.values())))} "
                  f"(prefix {prefix!r}, app {app_id!r})")  # fmt: skip
            return 0
        held = asyncio.run(existing(bootstrap, sorted({b[3] for b in wanted}), args.timeout))
    except (AclError, ConfigError) as exc:
        print(f"acls: {exc}", file=sys.stderr)
        return 1
    missing = [b for b in wanted if b not in held]
    for b in missing:
        op = next(k for k, v in OPERATIONS.items() if v == b[5])
        print(f"acls: MISSING {b[3]} {op} on {b[1]}", file=sys.stderr)
    print(f"acls: {len(wanted) - len(missing)} of {len(wanted)} in place")
    return 1 if missing else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
