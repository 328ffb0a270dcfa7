"""Reading a ``multipart/form-data`` body as it arrives, never whole.

:func:`multipart_events` turns the request's chunks into a flat stream of
:class:`PartStart`, ``bytes`` (a slice of the current part's body) and
:data:`PART_END`. Memory use is bounded by one network chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from api.errors import BadRequest


class BadMultipart(BadRequest):
    """The multipart body cannot be parsed."""


@dataclass(frozen=True)
class PartStart:
    name: str
    filename: str | None
    content_type: str | None


class _PartEnd:
    def __repr__(self) -> str:
        return "PART_END"


PART_END: Final = _PartEnd()

Event = PartStart | bytes | _PartEnd


def boundary_of(content_type: str) -> bytes:
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadMultipart("the multipart body has no boundary in its Content-Type")
    return boundary


async def multipart_events(request: Request, boundary: bytes) -> AsyncIterator[Event]:
    """The body's parts as events, in order, as the bytes arrive."""
    events: list[Event] = []
    headers: dict[str, bytes] = {}
    field, value = bytearray(), bytearray()

    def on_header_end() -> None:
        headers[field.decode("latin-1").lower()] = bytes(value)
        field.clear()
        value.clear()

    def on_headers_finished() -> None:
        # raw header bytes: browsers send UTF-8 file names unencoded
        _, params = parse_options_header(headers.get("content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        content_type = headers.get("content-type", b"").decode("latin-1") or None
        events.append(PartStart(name, None if filename is None else filename.decode("utf-8", "replace"), content_type))
        headers.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": lambda data, start, end: field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: value.extend(data[start:end]),
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": lambda data, start, end: events.append(bytes(data[start:end])),
            "on_part_end": lambda: events.append(PART_END),
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            for event in events:
                yield event
            events.clear()
        parser.finalize()
    except MultipartParseError as error:
        raise BadMultipart(f"the multipart body is malformed: {error}") from None
    for event in events:
        yield event
