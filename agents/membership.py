"""A restarted worker takes its partitions back without waiting for its old session to expire.

A SIGKILLed worker stays a member of its consumer groups until its session times out (10 s):
the group cannot rebalance before, so its partitions, restarted or not, wait that long. Kafka's
static membership (`group.instance.id`) avoids it, but Faust's partition assignor fails when a
static member rejoins (faust/assignor/partition_assignor.py `on_assignment`). So the worker
notes its member ids (the Faust group's and the intake's) in its data directory, and at start
sends a LeaveGroup for the ids the previous process left there: the broker removes those
members at once and the new process joins a group that can rebalance. Ids of members already
gone are refused by the broker (UNKNOWN_MEMBER_ID), which changes nothing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("engagement.worker")

FILE = "members.json"


def _path(data_dir: str) -> Path:
    return Path(data_dir) / FILE


def remember(data_dir: str, members: dict[str, str]) -> None:
    """Note {group: member id} (written atomically; an unchanged note is not rewritten)."""
    path = _path(data_dir)
    text = json.dumps(members, sort_keys=True)
    try:
        if path.exists() and path.read_text() == text:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as exc:
        log.debug("cannot note the member ids in %s: %s", path, exc)


def remembered(data_dir: str) -> dict[str, str]:
    try:
        data = json.loads(_path(data_dir).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(g): str(m) for g, m in data.items() if isinstance(m, str) and m}


async def leave_previous(bootstrap: str, data_dir: str, client_kwargs: dict[str, Any]) -> int:
    """Send a LeaveGroup for each member id the previous process noted; the number removed."""
    members = remembered(data_dir)
    if not members:
        return 0
    from aiokafka.client import AIOKafkaClient, CoordinationType
    from aiokafka.protocol.group import LeaveGroupRequest

    client = AIOKafkaClient(bootstrap_servers=bootstrap, **client_kwargs)
    removed = 0
    try:
        await client.bootstrap()
        for group, member in sorted(members.items()):
            try:
                node = await client.coordinator_lookup(CoordinationType.GROUP, group)
                resp = await client.send(node, LeaveGroupRequest(group, member))
            except Exception as exc:  # the broker may be away: the session expires anyway
                log.info("could not remove the previous member of %s (%s)", group, exc)
                continue
            if getattr(resp, "error_code", -1) == 0:
                removed += 1
                log.info("removed this worker's previous member from %s", group)
    finally:
        await client.close()
    _path(data_dir).unlink(missing_ok=True)
    return removed


def member_ids(worker: Any) -> dict[str, str]:
    """{group: member id} of the worker's consumers now (empty ids left out)."""
    out: dict[str, str] = {}
    try:
        faust_consumer = worker.app.consumer._thread._consumer
        member = faust_consumer._coordinator.member_id
        if member:
            out[worker.names.app_group] = member
    except AttributeError:
        pass
    intake = worker.intake.consumer
    coordinator = getattr(intake, "_coordinator", None)
    member = getattr(coordinator, "member_id", "") if coordinator is not None else ""
    if member:
        out[worker.names.intake_group] = member
    return out
