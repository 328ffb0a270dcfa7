"""``Upstash-Redact-Fields``: private data kept out of API answers, delivered unchanged.

A message published with ``body``, ``header`` (every header) or
``header[<Name>]`` redacted shows those fields as ``REDACTED:<SHA-256 hex>`` in
``GET /v2/messages``, the DLQ, the events log and schedules, while deliveries
(and DLQ retries) carry the original values, as QStash documents. The hash lets
a caller check a value without the server revealing it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

_PART = re.compile(r"^(body|headers?)(?:\[([^\[\]]+)\])?$")


class RedactionError(ValueError):
    """A malformed ``Upstash-Redact-Fields`` (400)."""


@dataclasses.dataclass(frozen=True)
class Redaction:
    body: bool = False
    all_headers: bool = False
    headers: frozenset[str] = frozenset()

    def shows_header(self, name: str) -> bool:
        return not (self.all_headers or name.lower() in self.headers)


def parse_redaction(raw: str | None) -> str | None:
    """The header's value normalised for storage (``None`` for nothing to redact)."""
    if raw is None or not raw.strip():
        return None
    parts = []
    for part in raw.split(","):
        match = _PART.match(part.strip())
        if match is None or (match.group(1) == "body" and match.group(2)):
            raise RedactionError(
                f"invalid Upstash-Redact-Fields {raw[:128]!r}: expected body, header or header[<Name>], comma separated"
            )
        parts.append("body" if match.group(1) == "body" else f"header[{match.group(2).lower()}]" if match.group(2) else "header")
    return ",".join(dict.fromkeys(parts))


def redaction(stored: str | None) -> Redaction:
    if not stored:
        return Redaction()
    parts = stored.split(",")
    return Redaction(
        body="body" in parts,
        all_headers="header" in parts,
        headers=frozenset(part[len("header["):-1] for part in parts if part.startswith("header[")),
    )


def redacted(value: bytes | str) -> str:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return "REDACTED:" + hashlib.sha256(data).hexdigest()


def shown_headers(headers: dict[str, str], stored: str | None) -> dict[str, str]:
    rule = redaction(stored)
    return {name: value if rule.shows_header(name) else redacted(value) for name, value in headers.items()}
