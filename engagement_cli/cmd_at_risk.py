"""List the customers at risk (health < 40), lowest health first, with their score and its parts.

Reads the health the live workers keep in Redis (the sorted set `{prefix}{app_id}:health` and the
hash `{prefix}{app_id}:health:parts`, see agents/health.py): recency, frequency and sentiment as
defined in docs/metrics.md ("Customer health"), and the instant they were computed at (as_of).
Workers refresh every customer every ENGAGEMENT_HEALTH_REFRESH_SECONDS (default 60) and a changed
customer within about a second. The table goes to stdout; with --json, one JSON object:
{"threshold": 40, "at_risk": TOTAL, "customers": [{"customer", "health", "recency", "frequency",
"sentiment", "as_of"}, ...]}.

examples:
  engagement at-risk
  engagement at-risk --limit 20
  engagement at-risk --json | jq '.customers[].customer'
  engagement at-risk --redis-url redis://redis:6379/0 --prefix staging. --app-id engagement
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agents.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from agents.health import DEFAULT_LIMIT, MAX_LIMIT, health_keys, parse_limit, read_at_risk_sync
from streams.errors import ConfigError
from streams.topics import ENV_PREFIX, TopicSettingsError, validate_prefix

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _limit(raw: str) -> int:
    try:
        return parse_limit(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"list at most N customers, 1 to {MAX_LIMIT} (default: {DEFAULT_LIMIT})",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
        metavar="URL",
        help=f"Redis of the workers (env REDIS_URL; {DEFAULT_REDIS_URL})",
    )
    p.add_argument(
        "--prefix",
        default=os.environ.get(ENV_PREFIX, ""),
        help="topic name prefix of the deployment (env ENGAGEMENT_TOPIC_PREFIX)",
    )
    p.add_argument(
        "--app-id",
        default=os.environ.get("ENGAGEMENT_APP_ID") or "engagement",
        help="the workers' app id (env ENGAGEMENT_APP_ID; engagement)",
    )


def _redact(url: str) -> str:
    """The URL without its password (error messages)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "(unparsable URL)"


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _table(body: dict[str, Any]) -> str:
    rows = body["customers"]
    if not rows:
        return f"no customer at risk (health < {body['threshold']})\n"
    width = max(8, *(len(r["customer"]) for r in rows))
    lines = [
        f"{'customer':<{width}}  {'health':>6}  {'recency':>7}  {'frequency':>9}  "
        f"{'sentiment':>9}  as_of"
    ]
    for r in rows:
        lines.append(
            f"{r['customer']:<{width}}  {_fmt(r['health'], '6.2f')}  "
            f"{_fmt(r['recency'], '7.3f')}  {_fmt(r['frequency'], '9.3f')}  "
            f"{_fmt(r['sentiment'], '9.3f')}  {r['as_of'] or '-'}"
        )
    shown = len(rows)
    total = body["at_risk"]
    more = f" (the {shown} lowest; --limit to see more)" if total > shown else ""
    lines.append(f"{total} customer(s) at risk (health < {body['threshold']}){more}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    import redis

    try:
        validate_prefix(args.prefix)
    except TopicSettingsError as exc:
        print(f"engagement at-risk: {exc}", file=sys.stderr)
        return EXIT_USAGE
    url = args.redis_url
    try:
        from agents.security import redis_kwargs

        client = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=3, **redis_kwargs(url)
        )
    except ConfigError as exc:
        print(f"engagement at-risk: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as exc:
        print(
            f"engagement at-risk: --redis-url {_redact(url)!r} is not a Redis URL ({exc}); "
            "expected e.g. redis://127.0.0.1:6379/0",
            file=sys.stderr,
        )
        return EXIT_USAGE
    zkey, hkey = health_keys(args.prefix, args.app_id)
    try:
        with client:
            body = read_at_risk_sync(client, zkey, hkey, args.limit)
            published = body["at_risk"] > 0 or bool(client.exists(zkey))
    except redis.RedisError as exc:
        print(
            f"engagement at-risk: cannot read from Redis at {_redact(url)}: "
            f"{type(exc).__name__}: {exc}\n"
            "  is Redis running? Start the local stack with `make stack-up`, or point to the "
            "workers' Redis with --redis-url URL (or REDIS_URL).",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if not published:
        print(
            f"engagement at-risk: no health published yet under {zkey!r} at {_redact(url)} "
            "(is a worker running with this --prefix and --app-id?)",
            file=sys.stderr,
        )
    if args.json:
        sys.stdout.write(json.dumps(body) + "\n")
    else:
        sys.stdout.write(_table(body))
    return EXIT_OK
