"""A small HTTP client of a worker's read-only endpoints (/snapshot, /health, /metrics, ...).

Standard library only (urllib), synchronous, so any command can use it without an event loop.
Every failure raises `WorkerError`, whose message names the problem and the fix, and whose
`kind` says what went wrong, so a command can map it to an exit code:

| kind | when |
|---|---|
| `unreachable` | connection refused, unknown host, timeout |
| `unavailable` | 503: Redis away, or not every partition answered (a rebalance, a worker down) |
| `too_old` | 422: the as-of is older than the state still holds |
| `bad_request` | 400: the as-of is not RFC 3339 (or epoch milliseconds) |
| `bad_answer` | any other status, or a body that is not the JSON expected |

The worker's URL: the `--url` flag, else `ENGAGEMENT_WORKER_URL`, else http://127.0.0.1:6066.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from streams.errors import EngagementError

DEFAULT_URL = "http://127.0.0.1:6066"
ENV_URL = "ENGAGEMENT_WORKER_URL"
DEFAULT_TIMEOUT = 30.0

UNREACHABLE = "unreachable"
UNAVAILABLE = "unavailable"
TOO_OLD = "too_old"
BAD_REQUEST = "bad_request"
BAD_ANSWER = "bad_answer"


class WorkerError(EngagementError):
    """A worker could not answer; `str()` names the problem and the fix."""

    def __init__(
        self, kind: str, message: str, status: int | None = None, body: Any = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.body = body


def worker_url(flag: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The worker's base URL: the flag, else $ENGAGEMENT_WORKER_URL, else the default."""
    env = os.environ if env is None else env
    url = (flag or env.get(ENV_URL, "") or DEFAULT_URL).strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise WorkerError(
            BAD_REQUEST,
            f"{url!r} is not a worker URL; give one like {DEFAULT_URL} (--url or {ENV_URL})",
        )
    return url


def get(
    url: str, path: str, params: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> tuple[int, bytes, str]:
    """(status, body, content type) of GET url+path; raises WorkerError(unreachable)."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    full = f"{url.rstrip('/')}{path}{query}"
    req = urllib.request.Request(full, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionRefusedError):
            why = "connection refused"
        elif isinstance(reason, TimeoutError | socket.timeout):
            why = f"no answer within {timeout:g}s"
        elif isinstance(reason, socket.gaierror):
            why = "unknown host"
        else:
            why = str(reason) or type(reason).__name__
        raise WorkerError(
            UNREACHABLE,
            f"cannot reach the worker at {url} ({why}). Is `engagement worker` running there? "
            f"Start one, or point --url / {ENV_URL} at a running worker.",
        ) from None


def _json(url: str, path: str, status: int, body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise WorkerError(
            BAD_ANSWER,
            f"{url}{path} answered HTTP {status} with a body that is not JSON; "
            "is that URL an engagement worker?",
            status,
        ) from None


def _error_text(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return json.dumps(body)[:300]


def get_json(
    url: str, path: str, params: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> Any:
    """The JSON body of a 200 answer; any other status raises WorkerError with its kind."""
    status, raw, _ = get(url, path, params, timeout)
    body = _json(url, path, status, raw)
    if status == 200:
        return body
    text = _error_text(body)
    if status == 503:
        missing = []
        if isinstance(body, dict):
            for key, label in (
                ("missing_user_partitions", "user"),
                ("missing_account_partitions", "account"),
            ):
                if body.get(key):
                    missing.append(f"{label} partitions {body[key]}")
        extra = f" (missing: {'; '.join(missing)})" if missing else ""
        raise WorkerError(
            UNAVAILABLE,
            f"the worker cannot answer yet (HTTP 503): {text}{extra}. Retry in a few seconds; "
            "if it lasts, check that Redis is up and every worker is running (`make stack-status`).",
            status,
            body,
        )
    if status == 422:
        raise WorkerError(
            TOO_OLD,
            f"the as-of is too old (HTTP 422): {text}. Ask for a later instant (--as-of), or "
            "use `engagement replay` on the raw records for history.",
            status,
            body,
        )
    if status == 400:
        raise WorkerError(
            BAD_REQUEST,
            f"the worker refused the request (HTTP 400): {text}. Give --as-of as RFC 3339 "
            "(2026-11-20T12:00:00Z) or epoch milliseconds.",
            status,
            body,
        )
    raise WorkerError(
        BAD_ANSWER,
        f"{url}{path} answered HTTP {status}: {text}; is that URL an engagement worker?",
        status,
        body,
    )


def snapshot(
    url: str, as_of: str | None = None, timeout: float = DEFAULT_TIMEOUT
) -> dict[str, Any]:
    """The live snapshot (`GET /snapshot[?as_of=T]`) as a dict; raises WorkerError."""
    body = get_json(url, "/snapshot", {"as_of": as_of} if as_of else None, timeout)
    if not isinstance(body, dict) or "as_of" not in body:
        raise WorkerError(
            BAD_ANSWER,
            f"{url}/snapshot answered 200 without a snapshot; is that URL an engagement worker?",
            200,
            body,
        )
    return body


def health(url: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """`GET /health` (liveness, owned partitions, records processed, clock)."""
    status, raw, _ = get(url, "/health", None, timeout)
    body = _json(url, "/health", status, raw)
    if not isinstance(body, dict):
        raise WorkerError(BAD_ANSWER, f"{url}/health did not answer a JSON object", status, body)
    return body


def metrics_text(url: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """`GET /metrics`: the Prometheus text exposition of the worker."""
    status, raw, _ = get(url, "/metrics", None, timeout)
    if status != 200:
        raise WorkerError(
            BAD_ANSWER, f"{url}/metrics answered HTTP {status}; is it an engagement worker?", status
        )
    return raw.decode("utf-8", "replace")
