"""QStash-style ``Upstash-Signature`` tokens for tests, with any claim changed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from local.qstash.settings import DEV_CURRENT_SIGNING_KEY


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def sign(body: bytes, url: str, *, key: str = DEV_CURRENT_SIGNING_KEY, exp_offset: int = 300,
         alg: str = "HS256", **claims: Any) -> str:
    """A token as QStash makes it (HS256 over header.payload), claims overridable.

    Written out rather than with PyJWT, which warns about the dev keys' length
    (and pytest makes warnings errors)."""
    now = int(time.time())
    payload = {
        "iss": "Upstash", "sub": url, "iat": now, "nbf": now, "exp": now + exp_offset,
        "jti": f"jwt_{uuid.uuid4().hex}", "body": b64url(hashlib.sha256(body).digest()),
        **claims,
    }
    signing_input = f"{b64url(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{b64url(json.dumps(payload).encode())}"
    mac = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"
