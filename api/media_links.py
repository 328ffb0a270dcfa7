"""Short-lived signed URLs for a lecture's media, so a ``<video>`` element can play it.

A ``<video>`` or ``<track>`` element cannot send an ``Authorization`` header, so
the owner asks (with their token) for links, and each link carries its own
proof: ``/media/<payload>.<signature>`` where the payload names one artifact of
one queue of one owner and an expiry, and the signature is HMAC-SHA256 of it
under a key only the service knows (``VIDPIPE_MEDIA_SIGNING_KEY``; by default
derived from the JWT secret). A link opens exactly that artifact until it
expires; changing any byte of it, or using it after the expiry, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Literal

MediaKind = Literal["video", "captions"]


class InvalidMediaLink(Exception):
    """The link was not made by this service, was altered, or has expired (the message says which)."""


@dataclass(frozen=True)
class MediaGrant:
    """What a valid link lets its bearer read."""

    queue_id: str
    owner_id: str
    kind: MediaKind
    key: str
    """The storage key of the artifact."""
    expires: int
    """Unix seconds."""


def derive_key(secret: str) -> bytes:
    """A media-signing key of its own, derived from another secret (so the two never coincide)."""
    return hmac.new(secret.encode(), b"vidpipe media links v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class MediaSigner:
    def __init__(self, key: bytes, *, ttl_seconds: int = 3600) -> None:
        if len(key) < 16:
            raise ValueError("a media-signing key needs at least 16 bytes")
        self._key = key
        self.ttl_seconds = ttl_seconds

    def sign(self, grant_for: tuple[str, str, MediaKind, str], *, now: float | None = None) -> tuple[str, int]:
        """The token for (queue id, owner id, kind, storage key), and its expiry."""
        queue_id, owner_id, kind, key = grant_for
        expires = int((now if now is not None else time.time()) + self.ttl_seconds)
        payload = _b64(json.dumps([queue_id, owner_id, kind, key, expires], separators=(",", ":")).encode())
        return f"{payload}.{self._signature(payload)}", expires

    def verify(self, token: str, *, now: float | None = None) -> MediaGrant:
        payload, _, signature = token.partition(".")
        if not payload or not signature or len(token) > 4096:
            raise InvalidMediaLink("this is not a media link")
        if not hmac.compare_digest(signature.encode(), self._signature(payload).encode()):  # any text, not only ASCII
            raise InvalidMediaLink("this media link was not made by this service or has been altered")
        try:
            queue_id, owner_id, kind, key, expires = json.loads(_unb64(payload))
        except (ValueError, TypeError) as error:
            raise InvalidMediaLink("this media link is malformed") from error
        if (now if now is not None else time.time()) >= int(expires):
            raise InvalidMediaLink("this media link has expired; ask for a new one")
        return MediaGrant(str(queue_id), str(owner_id), kind, str(key), int(expires))

    def _signature(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
