"""Official SDK routes this server does not implement: 501 naming the feature.

A local server that answers an SDK call with a 404/405, or worse with some
other effect, breaks the promise that code tested against it behaves the same
against QStash. Every route of the Python (``qstash`` 3.x) and TypeScript
(``@upstash/qstash`` 2.x) clients that has no implementation here is routed to
:func:`not_supported`, which answers ``501 {"error": "<feature> is not
supported by the local QStash server"}`` after checking the token. The list
shrinks as features are implemented; README (local/qstash) has the table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from local.qstash.context import authorize
from local.qstash.errors import ApiError

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

UNSUPPORTED: tuple[tuple[str, str], ...] = (
    ("/v2/dlq/multi", "the DLQ multi-id endpoint"),
    ("/v2/dlq/bulk", "asynchronous DLQ bulk actions"),
    ("/v2/messages/bulk", "asynchronous bulk cancel"),
    ("/v2/bulk-actions", "bulk actions"),
    ("/v2/bulk-actions/{rest:path}", "bulk actions"),
    ("/v2/workflows/{rest:path}", "Upstash Workflow"),
    ("/v2/logs", "the logs endpoint (use /v2/events)"),
    ("/llm/{rest:path}", "the LLM API"),
)
"""(path, feature) for every official route without an implementation."""


def not_supported(feature: str) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint answering 501 for ``feature`` (401 first without a valid token)."""

    async def endpoint(request: Request) -> Response:
        authorize(request)
        raise ApiError(501, f"{feature} is not supported by the local QStash server")

    return endpoint


def unsupported_routes() -> list[Route]:
    """Routes answering 501, mounted before the implemented ones (none of them overlaps an
    implemented route, and ``/v2/dlq/multi`` must not reach ``/v2/dlq/{dlqId}``)."""
    return [Route(path, not_supported(feature), methods=ALL_METHODS) for path, feature in UNSUPPORTED]
