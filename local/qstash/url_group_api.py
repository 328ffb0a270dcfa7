"""URL groups (QStash's topics): ``/v2/topics``.

``POST /v2/topics/{name}/endpoints`` ``{"endpoints": [{"url", "name"?}]}`` adds
endpoints (creating the group); ``DELETE`` with the same shape (by ``url`` or
``name``) removes them, and the group with its last one; ``GET
/v2/topics[/{name}]`` answers ``{name, createdAt, updatedAt, endpoints}``;
``DELETE /v2/topics/{name}``. Publishing to the name fans out
(``local.qstash.fanout``). Groups live in the SQLite store.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.qstash.context import authorize, json_body, store_of
from local.qstash.errors import ApiError
from local.qstash.fanout import GROUP_NAME
from local.qstash.publication import PublishError, validate_url
from local.qstash.store import UrlGroup

MAX_ENDPOINTS = 100


def _group_name(request: Request) -> str:
    name = str(request.path_params["name"])
    if not GROUP_NAME.match(name):
        raise ApiError(400, f"invalid URL group name {name[:64]!r}: use 1-128 letters, digits, '.', '_' or '-'")
    return name


async def _endpoints(request: Request) -> list[dict[str, Any]]:
    payload = await json_body(request)
    endpoints = payload.get("endpoints") if isinstance(payload, dict) else None
    if not isinstance(endpoints, list) or not endpoints or len(endpoints) > MAX_ENDPOINTS:
        raise ApiError(400, f'expected JSON {{"endpoints": [{{"url": "...", "name": "..."}}, ...]}} with 1-{MAX_ENDPOINTS} entries')
    for endpoint in endpoints:
        if not isinstance(endpoint, dict) or not all(
            isinstance(endpoint.get(key), (str, type(None))) for key in ("url", "name")
        ):
            raise ApiError(400, 'each endpoint must be {"url": "...", "name": "..."} with string values')
    return endpoints


async def add_endpoints(request: Request) -> Response:
    authorize(request)
    name = _group_name(request)
    endpoints = await _endpoints(request)
    pairs = []
    for endpoint in endpoints:
        try:
            pairs.append((endpoint.get("name"), validate_url(str(endpoint.get("url") or ""), "endpoint url")))
        except PublishError as error:
            raise ApiError(400, error.message) from None
    store_of(request).add_endpoints(name, pairs, time.time())
    return Response(status_code=200)


async def remove_endpoints(request: Request) -> Response:
    authorize(request)
    name = _group_name(request)
    endpoints = await _endpoints(request)
    if not all(endpoint.get("url") or endpoint.get("name") for endpoint in endpoints):
        raise ApiError(400, "each endpoint to remove needs its url or its name")
    if not store_of(request).url_groups(name):
        raise ApiError(404, "URL group not found")
    store_of(request).remove_endpoints(name, [(e.get("name"), e.get("url")) for e in endpoints])
    return Response(status_code=200)


def group_json(group: UrlGroup) -> dict[str, Any]:
    return {
        "name": group.name,
        "createdAt": int(group.created_at * 1000),
        "updatedAt": int(group.updated_at * 1000),
        "endpoints": [
            {"url": url, **({"name": endpoint} if endpoint else {})} for endpoint, url in group.endpoints
        ],
    }


async def get_group(request: Request) -> Response:
    authorize(request)
    found = store_of(request).url_groups(_group_name(request))
    if not found:
        raise ApiError(404, "URL group not found")
    return JSONResponse(group_json(found[0]))


async def list_groups(request: Request) -> Response:
    authorize(request)
    return JSONResponse([group_json(group) for group in store_of(request).url_groups()])


async def delete_group(request: Request) -> Response:
    authorize(request)
    if not store_of(request).delete_url_group(_group_name(request)):
        raise ApiError(404, "URL group not found")
    return Response(status_code=200)


def url_group_routes() -> list[Route]:
    return [
        Route("/v2/topics", list_groups, methods=["GET"]),
        Route("/v2/topics/{name}", get_group, methods=["GET"]),
        Route("/v2/topics/{name}", delete_group, methods=["DELETE"]),
        Route("/v2/topics/{name}/endpoints", add_endpoints, methods=["POST"]),
        Route("/v2/topics/{name}/endpoints", remove_endpoints, methods=["DELETE"]),
    ]
