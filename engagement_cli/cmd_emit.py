"""Send one product event or survey answer to Kafka, validated first as the engine would.

TYPE is an event type (signup, page_view, purchase, feature_used, ... or any custom type
matching [a-z][a-z0-9_]{0,63}), or csat, nps or ces for a survey answer (then --score). The
record is keyed by --user and goes to the partition the engine expects; its timestamp is now
(--record-ts for a backfill). A record the engine would reject is not sent: the command prints
the engine's reason and message and exits 2. On success it prints the topic, partition and
offset. --prop NAME=VALUE reads VALUE as JSON when it is (19.9, true, {"a":1}), else as a
string; --prop-str NAME=VALUE always as a string.

examples:
  engagement emit signup --user u-42 --account acme
  engagement emit page_view --user u-42 --session s-9 --prop path=/pricing
  engagement emit purchase --user u-42 --prop order_id=o-1 --prop amount=19.9
  engagement emit feature_used --user u-42 --prop feature=export
  engagement emit nps --user u-42 --score 9 --touchpoint support --comment "fast!"
  engagement emit key_action --user u-42 --ts 2026-11-20T10:00:00Z --record-ts 2026-11-20T10:00:01Z
  engagement emit --json '{"event_id":"e-1","type":"signup","user_id":"u-42","ts":'"$(date +%s)000"'}'
  engagement emit purchase --user u-42 --prop order_id=o-1 --prop amount=-1 --dry-run  # exit 2

The too_late check uses the workers' allowed lateness: --lateness-hours, else
allowed_lateness_hours of the TOML file (--config, $ENGAGEMENT_CONFIG), else 48.

exit codes:
  0  sent and acknowledged (or valid, with --dry-run)
  1  Kafka did not take it (unreachable, a missing topic: run `engagement topics`)
  2  bad usage, or a record the engine would reject (nothing is sent)
  3  bad configuration: the TOML file (--config, $ENGAGEMENT_CONFIG), or Kafka security
     settings (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*)
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from typing import Any

from agents.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from engagement_cli.cli import add_kafka_arguments

SURVEY_TYPES = ("csat", "nps", "ces")
EMIT_BACKFILL_HINT = "--record-ts sets the record timestamp: for a backfill, give one near --ts"
_INT = re.compile(r"-?[0-9]+", re.ASCII)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("type", nargs="?", metavar="TYPE", help="event type, or csat / nps / ces")
    p.add_argument("--user", help="user_id (also the record key)")
    p.add_argument("--account", help="account_id (the customer)")
    p.add_argument("--session", help="session_id (session_start, session_end, page_view)")
    p.add_argument("--id", dest="record_id", help="event_id / response_id (default: a UUID)")
    p.add_argument("--ts", help="event time: RFC 3339 with an offset, or epoch ms (default: now)")
    p.add_argument(
        "--record-ts", metavar="T", help="the Kafka record timestamp (default: now), for backfills"
    )
    p.add_argument(
        "--prop",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a props field, VALUE read as JSON when it is valid JSON (repeatable)",
    )
    p.add_argument(
        "--prop-str",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a props field whose VALUE is always a string (repeatable)",
    )
    p.add_argument("--score", type=int, help="survey score (csat 1-5, nps 0-10, ces 1-7)")
    p.add_argument("--touchpoint", help="survey touchpoint (support, checkout, ...)")
    p.add_argument("--comment", help="survey comment")
    p.add_argument(
        "--json",
        dest="value_json",
        metavar="VALUE",
        help="the whole record value as JSON (instead of TYPE and the flags above)",
    )
    p.add_argument(
        "--topic",
        choices=("product-events", "survey-answers"),
        help="with --json: the topic (default: survey-answers when it has a survey field)",
    )
    p.add_argument(
        "--lateness-hours",
        type=float,
        default=None,
        metavar="H",
        help="the workers' allowed lateness, for the too_late check (default: "
        "allowed_lateness_hours of --config, else 48)",
    )
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        default=os.environ.get("ENGAGEMENT_CONFIG"),
        help="the workers' metric configuration, for allowed_lateness_hours "
        "(default: $ENGAGEMENT_CONFIG)",
    )
    add_kafka_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="validate and print; send nothing")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--print-json", action="store_true", help="also print the value sent")


class UsageError(Exception):
    """A flag that cannot make a record; exit 2."""


def _instant_ms(flag: str, raw: str) -> int:
    from streams.errors import AsOfError
    from streams.timeutil import MS, parse_as_of

    try:
        return int(parse_as_of(raw) // MS)
    except AsOfError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _ts(raw: str | None) -> int | str | None:
    """--ts as it goes on the wire: an integer for epoch ms, else the string as written (the
    engine judges it, so a malformed one gets the engine's reason)."""
    if raw is None:
        return None
    return int(raw) if _INT.fullmatch(raw.strip()) else raw


def _props(args: argparse.Namespace) -> dict[str, Any] | None:
    props: dict[str, Any] = {}
    for raw, as_json in [(r, True) for r in args.prop] + [(r, False) for r in args.prop_str]:
        name, sep, value = raw.partition("=")
        if not sep or not name:
            flag = "--prop" if as_json else "--prop-str"
            raise UsageError(f"{flag} {raw!r}: expected NAME=VALUE (e.g. {flag} order_id=o-1)")
        if as_json:
            try:
                props[name] = json.loads(value)
            except ValueError:
                props[name] = value
        else:
            props[name] = value
    return props or None


def lateness_hours(args: argparse.Namespace) -> float:
    """--lateness-hours, else allowed_lateness_hours of the TOML file (--config or
    $ENGAGEMENT_CONFIG), else the default 48: the workers' own value. Raises ConfigError."""
    from streams.config import Config

    if args.lateness_hours is not None:
        return float(args.lateness_hours)
    if args.config:
        return float(Config.from_toml_file(args.config).allowed_lateness_hours)
    return float(Config().allowed_lateness_hours)


def build(args: argparse.Namespace) -> Any:
    """The sdk.Record the flags describe; raises UsageError or sdk.Reject."""
    from streams import sdk

    record_ts = None if args.record_ts is None else _instant_ms("--record-ts", args.record_ts)
    lateness = lateness_hours(args)
    if args.value_json is not None:
        if args.type is not None:
            raise UsageError("give either TYPE with flags, or --json VALUE, not both")
        try:
            value = json.loads(args.value_json)
        except ValueError as exc:
            raise sdk.Reject("bad_json", f"--json is not JSON: {exc}") from None
        topic = args.topic or (
            sdk.SURVEY_ANSWERS
            if isinstance(value, dict) and "survey" in value
            else sdk.PRODUCT_EVENTS
        )
        data = sdk.encode(value) if isinstance(value, dict) else args.value_json.encode()
        rts = sdk.now_ms() if record_ts is None else record_ts
        sdk.validate(topic, data, rts, lateness)
        return sdk.Record(topic, str(value["user_id"]).encode("utf-8"), data, rts)
    if args.type is None:
        raise UsageError("give the event TYPE (e.g. signup, page_view, nps) or --json VALUE")
    if not args.user:
        raise UsageError("--user is required (the user_id, also the record key)")
    common: dict[str, Any] = {
        "ts": _ts(args.ts),
        "account_id": args.account,
        "record_ts": record_ts,
        "lateness_hours": lateness,
    }
    if args.type in SURVEY_TYPES:
        if args.score is None:
            raise UsageError(f"a {args.type} answer needs --score")
        if args.prop or args.prop_str or args.session:
            raise UsageError("--prop, --prop-str and --session are for product events")
        return sdk.survey_answer(
            args.type,
            args.score,
            args.user,
            response_id=args.record_id,
            touchpoint=args.touchpoint,
            comment=args.comment,
            **common,
        )
    if args.score is not None or args.touchpoint or args.comment:
        raise UsageError("--score, --touchpoint and --comment are for csat, nps or ces answers")
    return sdk.event(
        args.type,
        args.user,
        event_id=args.record_id,
        session_id=args.session,
        props=_props(args),
        **common,
    )


async def _send(args: argparse.Namespace, record: Any) -> Any:
    from engagement_cli.producer import Producer

    async with Producer(
        args.bootstrap, prefix=args.prefix, client_id="engagement-emit", metadata_timeout_s=5.0
    ) as p:
        return await p.send_and_wait(record)


def run(args: argparse.Namespace) -> int:
    from streams import sdk
    from streams.errors import ConfigError
    from streams.timeutil import MS, format_instant

    prog = "engagement emit"
    try:
        record = build(args)
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except sdk.Reject as exc:
        # the SDK's backfill hint, said once and in the command's terms
        detail = (exc.detail or exc.reason).replace(sdk.BACKFILL_HINT, EMIT_BACKFILL_HINT)
        if exc.reason == "future":
            detail += f" ({EMIT_BACKFILL_HINT})"
        print(
            f"{prog}: the engine would reject this record ({exc.reason}): {detail}; "
            "nothing was sent",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.print_json or args.dry_run:
        print(record.value.decode("utf-8"))
    if args.dry_run:
        if not args.quiet:
            print(
                f"valid for {args.prefix}{record.topic} (key {record.user_id}); not sent (--dry-run)"
            )
        return EXIT_OK
    from engagement_cli.producer import ProducerError

    try:
        meta = asyncio.run(_send(args, record))
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ProducerError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if not args.quiet:
        print(
            f"sent to {meta.topic} partition {meta.partition} offset {meta.offset} "
            f"(key {record.user_id}, timestamp {format_instant(record.timestamp_ms * MS)})"
        )
    return EXIT_OK
