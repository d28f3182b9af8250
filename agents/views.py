"""HTTP endpoints of every worker (read-only): /snapshot, /partials, /health, /metrics, /at-risk.

Errors never echo raw record content; they name the problem and what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from faust.web import Request, Response, View

from streams.errors import AsOfError
from streams.timeutil import Instant

if TYPE_CHECKING:
    from agents.runtime import Endpoints


# The 400 body of a bad as_of: what is expected, never the value received (which could be any
# text a caller or an attacker chose, e.g. markup or a record pasted into the URL).
AS_OF_ERROR = (
    "as_of must be an RFC 3339 instant in years 0001-9999 with an offset "
    "(e.g. 2026-11-20T10:00:00Z) or epoch milliseconds"
)


def register(worker: Endpoints) -> None:
    app = worker.app

    def as_of(request: Request) -> tuple[Instant | None, str]:
        """The as-of instant of a request (default: the worker's clock), or an error."""
        try:
            return worker.parse_as_of(request.query.get("as_of")), ""
        except AsOfError:
            return None, AS_OF_ERROR

    @app.page("/snapshot")
    async def snapshot(self: View, request: Request) -> Response:
        t, error = as_of(request)
        if t is None:
            return self.json({"error": error}, status=400)
        status, body = await worker.gather(t)
        return self.json(body, status=status)

    @app.page("/partials")
    async def partials(self: View, request: Request) -> Response:
        t, error = as_of(request)
        if t is None:
            return self.json({"error": error}, status=400)
        return self.json(worker.local_partials(t))

    @app.page("/health")
    async def health(self: View, request: Request) -> Response:
        body = worker.health()
        want_ready = request.query.get("ready") not in (None, "", "0", "false")
        status = 200 if (body["ready"] or not want_ready) else 503
        return self.json(body, status=status)

    @app.page("/metrics")
    async def metrics(self: View, request: Request) -> Response:
        data, content_type = worker.metrics_text()
        return self.bytes(data, content_type=content_type)
