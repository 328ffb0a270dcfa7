"""``Upstash-Signature``: the JWT that lets a destination trust a delivery.

HS256 with the current signing key; claims ``iss: "Upstash"``, ``sub``: the
exact destination URL, ``iat``/``nbf``: now, ``exp``: now + 5 minutes,
``jti``: unique, ``body``: base64url(SHA-256(raw body)) without padding.
``qstash.Receiver`` verifies exactly these claims.

The token is assembled here with :mod:`hmac` rather than PyJWT so that a
short signing key configured by a user signs without an insecure-key warning
on every delivery (QStash's own keys are 32 characters).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

SIGNATURE_LIFETIME_S = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def body_hash(body: bytes) -> str:
    """base64url of the SHA-256 of ``body``, padding stripped."""
    return _b64url(hashlib.sha256(body).digest())


def encode_hs256(claims: dict[str, object], key: str) -> str:
    """A compact JWS (``header.payload.signature``) signed with HMAC-SHA256."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(key.encode("utf-8"), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def sign(*, url: str, body: bytes, key: str, now: float | None = None) -> str:
    """The ``Upstash-Signature`` header value for delivering ``body`` to ``url``."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": "Upstash",
        "sub": url,
        "iat": issued,
        "nbf": issued,
        "exp": issued + SIGNATURE_LIFETIME_S,
        "jti": f"jwt_{secrets.token_hex(12)}",
        "body": body_hash(body),
    }
    return encode_hs256(claims, key)
