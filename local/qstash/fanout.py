"""Where a publish goes: one URL, or every endpoint of a URL group.

QStash reads a destination that is not an absolute URL as the name of a URL
group (its topic): the message is copied to each endpoint, each copy a
message of its own (own id, retries, signature for its own URL) tagged with
``topicName`` and ``endpointName``, and the answer lists them. A group that
does not exist is 404. Destinations naming an Upstash API (``api/llm``, ...)
are 501. Deduplication applies per endpoint.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence

from local.qstash.message import new_id
from local.qstash.publication import Publication, PublishError, parse_publication
from local.qstash.settings import Settings

GROUP_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

Endpoints = Callable[[str], Sequence[tuple[str | None, str]] | None]
"""Looks up a group's ``(name, url)`` endpoints; ``None`` when there is no such group."""


def is_url(destination: str) -> bool:
    return "://" in destination


def publications(
    *,
    destination: str,
    headers: dict[str, str],
    body: bytes,
    caller_ip: str | None,
    settings: Settings,
    now: float,
    queue: str | None,
    endpoints: Endpoints,
) -> list[Publication]:
    """The messages one publish creates: one for a URL, one per endpoint for a group."""
    if is_url(destination):
        return [_one(destination, headers, body, caller_ip, settings, now, queue)]
    if not GROUP_NAME.match(destination):
        raise PublishError(
            f"publishing to an Upstash API ({destination[:64]!r}) is not supported by the local QStash"
            " server; publish to a full http(s) URL or a URL group",
            status=501,
        )
    members = endpoints(destination)
    if not members:
        raise PublishError(f"URL group {destination!r} not found (add endpoints with POST /v2/topics/{{name}}/endpoints)", 404)
    copies = []
    for name, url in members:
        publication = _one(url, headers, body, caller_ip, settings, now, queue)
        message = dataclasses.replace(publication.message, topic_name=destination, endpoint_name=name)
        key = None if publication.dedup_key is None else f"{publication.dedup_key}\0{url}"
        copies.append(Publication(message=message, dedup_key=key))
    return copies


def _one(
    url: str,
    headers: dict[str, str],
    body: bytes,
    caller_ip: str | None,
    settings: Settings,
    now: float,
    queue: str | None,
) -> Publication:
    return parse_publication(
        destination=url,
        headers=headers,
        body=body,
        caller_ip=caller_ip,
        settings=settings,
        now=now,
        message_id=new_id("msg"),
        queue=queue,
    )
