"""Checking ``Upstash-Signature`` in two stages, so a forged delivery costs nothing.

QStash signs each delivery with a JWT (HS256, the current signing key) whose
claims name the issuer (``Upstash``), the destination URL (``sub``), its
validity (``nbf``, ``exp``) and the SHA-256 of the body (``body``). All of it
but the body hash can be checked from the header alone, so
:meth:`StepSignatures.check_header` does that before a byte of the body is
read: a missing header, something that is not a JWT, a token signed with
neither signing key, an expired one or one for another URL is refused while
the body still sits in the client's socket (a 1.5 GB unauthenticated POST
used to be buffered whole before its 401). Only then is the body read (with a
cap) and :meth:`StepSignatures.verify` runs the official check,
``qstash.Receiver.verify``, against the raw body.

Every refusal is a :class:`SignatureRejected` naming the check that failed
(:data:`CHECKS`), so an operator reading QStash's logs or ours sees whether
the keys, the public URL, the clock or the body is wrong. No message quotes a
signing key or the signature itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from typing import Any

from qstash import Receiver
from qstash.errors import SignatureError

MAX_SIGNATURE_CHARS = 4096
"""Longer ``Upstash-Signature`` values are not QStash's (its tokens are a few hundred characters)."""

_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_SHOWN_CHARS = 64

CHECKS = (
    "missing header",
    "not a JWT",
    "bad signature or key",
    "wrong issuer",
    "expired",
    "not yet valid",
    "URL mismatch",
    "body hash mismatch",
)
"""What :attr:`SignatureRejected.check` can be."""


class SignatureRejected(Exception):
    """A delivery whose ``Upstash-Signature`` failed ``check`` (one of :data:`CHECKS`)."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"Upstash-Signature rejected ({check}): {detail}")
        self.check = check


def _shown(text: str) -> str:
    """``text`` as it may appear in a message: at most a line's worth of it."""
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


class StepSignatures:
    """Verifies QStash's signatures with the current signing key, then the next one."""

    def __init__(self, current_key: str, next_key: str, *, clock_tolerance: int = 30) -> None:
        self._keys = (current_key.encode(), next_key.encode())
        self._receiver = Receiver(current_key, next_key)
        self.clock_tolerance = clock_tolerance

    def check_header(self, signature: str | None, url: str) -> None:
        """Everything that can be checked without the body; raises :class:`SignatureRejected`."""
        if not signature:
            raise SignatureRejected("missing header", "QStash signs every delivery; this request is not from QStash")
        claims = self._claims(signature)
        now = time.time()
        if claims.get("iss") != "Upstash":
            raise SignatureRejected("wrong issuer", f"the issuer is {_shown(str(claims.get('iss')))!r}, not 'Upstash'")
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)) or not isinstance(nbf, (int, float)):
            raise SignatureRejected("not a JWT", "the token lacks its exp or nbf claim")
        if exp < now - self.clock_tolerance:
            raise SignatureRejected(
                "expired", f"the signature expired {int(now - exp)} s ago (is this server's clock right?)"
            )
        if nbf > now + self.clock_tolerance:
            raise SignatureRejected(
                "not yet valid", f"the signature is valid only in {int(nbf - now)} s (is this server's clock right?)"
            )
        sub = claims.get("sub")
        if sub != url:
            raise SignatureRejected(
                "URL mismatch",
                f"signed for {_shown(str(sub))!r} but delivered to {url!r}; "
                "NEXTAUTH_URL (or VERCEL_URL) must be the public URL QStash calls",
            )
        if not isinstance(claims.get("body"), str):
            raise SignatureRejected("not a JWT", "the token lacks its body claim")

    def verify(self, signature: str, body: bytes, url: str) -> None:
        """The official check (``qstash.Receiver``) against the raw body; raises :class:`SignatureRejected`."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureRejected("body hash mismatch", "the body is not UTF-8, so QStash did not send it") from None
        try:
            self._receiver.verify(signature=signature, body=text, url=url, clock_tolerance=self.clock_tolerance)
        except SignatureError:
            self.check_header(signature, url)  # names the check, if it is one the header shows
            signed = str(self._claims(signature).get("body", "")).rstrip("=")
            if signed != _b64_sha256(body):
                raise SignatureRejected(
                    "body hash mismatch", f"the body ({len(body)} bytes) is not the one that was signed"
                ) from None
            raise SignatureRejected("bad signature or key", "qstash.Receiver refused the signature") from None

    def _claims(self, signature: str) -> dict[str, Any]:
        """The verified claims of ``signature``: its HMAC matches the current or the next key."""
        if len(signature) > MAX_SIGNATURE_CHARS or not _JWT_SHAPE.fullmatch(signature):
            raise SignatureRejected(
                "not a JWT", f"expected header.payload.signature in base64url, got {len(signature)} characters that are not"
            )
        head, payload, mac = signature.split(".")
        try:
            header, claims = json.loads(_b64decode(head)), json.loads(_b64decode(payload))
            given = _b64decode(mac)
        except (ValueError, binascii.Error):
            raise SignatureRejected("not a JWT", "its header or payload is not base64url-encoded JSON") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise SignatureRejected("not a JWT", "its header or payload is not a JSON object")
        if header.get("alg") != "HS256":
            raise SignatureRejected("bad signature or key", f"algorithm {_shown(str(header.get('alg')))!r}, QStash uses HS256")
        signing_input = f"{head}.{payload}".encode()
        if not any(
            hmac.compare_digest(hmac.new(key, signing_input, hashlib.sha256).digest(), given) for key in self._keys
        ):
            raise SignatureRejected(
                "bad signature or key",
                "signed with neither QSTASH_CURRENT_SIGNING_KEY nor QSTASH_NEXT_SIGNING_KEY",
            )
        return claims
