"""Upload API request signatures, checked the way Cloudinary checks them.

The SDK signs every parameter it sends except ``file``, ``api_key``,
``resource_type``, ``cloud_name`` and the signature itself: the parameters,
each ``name=value`` (lists joined with ``,``; ``&`` escaped as ``%26`` in
signature version 2), sorted and joined with ``&``, then the account's
``api_secret`` appended, hashed with SHA-1 (40 hex digits) or SHA-256 (64).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

UNSIGNED = frozenset({"file", "api_key", "resource_type", "cloud_name", "signature"})


class SignatureError(Exception):
    """Why a request's signature is refused; the message is Cloudinary's own wording."""


def string_to_sign(params: Mapping[str, str | list[str]]) -> str:
    parts = []
    for name, value in params.items():
        if name in UNSIGNED:
            continue
        text = ",".join(value) if isinstance(value, list) else value
        if text == "":
            continue
        parts.append(f"{name}={text}".replace("&", "%26"))
    return "&".join(sorted(parts))


def sign(params: Mapping[str, str | list[str]], api_secret: str, algorithm: str = "sha1") -> str:
    return hashlib.new(algorithm, (string_to_sign(params) + api_secret).encode()).hexdigest()


def response_signature(public_id: str, version: int, api_secret: str) -> str:
    """The ``signature`` field of an upload response (signature version 1, SHA-1)."""
    return hashlib.sha1(f"public_id={public_id}&version={version}{api_secret}".encode()).hexdigest()


def verify(
    params: Mapping[str, str | list[str]],
    *,
    api_key: str,
    api_secret: str,
    tolerance_s: int,
    now: float | None = None,
) -> None:
    """Raise :class:`SignatureError` unless ``params`` are signed by this account, recently."""
    given_key = params.get("api_key")
    if not given_key:
        raise SignatureError("Must supply api_key")
    if given_key != api_key:
        raise SignatureError(f"Unknown API key {given_key}")
    signature = params.get("signature")
    if not isinstance(signature, str) or not signature:
        raise SignatureError("Missing required parameter - signature")
    algorithm = "sha256" if len(signature) == 64 else "sha1"
    if not hmac.compare_digest(signature, sign(params, api_secret, algorithm)):
        raise SignatureError(f"Invalid Signature {signature}. String to sign - '{string_to_sign(params)}'.")
    timestamp = params.get("timestamp")
    if not isinstance(timestamp, str) or not timestamp.isdigit():
        raise SignatureError("Missing required parameter - timestamp")
    current = time.time() if now is None else now
    if current - int(timestamp) > tolerance_s:
        raise SignatureError(
            f"Stale request - reported time is {timestamp} which is more than "
            f"{tolerance_s // 60} minutes ago"
        )
