"""``python -m api.token --user ID --role tutor``: mint a development token.

Prints an HS256 JWT signed with ``VIDPIPE_JWT_SECRET`` (the embedded
default's development secret unless set), with ``sub`` = the user id and the
role at ``VIDPIPE_JWT_ROLE_CLAIM``. Refused in production: tokens there come
from the real auth provider.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import jwt

from api.settings import Settings
from domain import VidpipeError


def mint(settings: Settings, user: str, role: str, *, ttl_seconds: int = 86400, now: float | None = None) -> str:
    """A token for ``user`` with ``role``, valid for ``ttl_seconds``."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": user, "iat": issued, "exp": issued + ttl_seconds}
    target = claims
    *parents, leaf = settings.jwt_role_claim.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = role
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.token", description=__doc__.splitlines()[0])
    parser.add_argument("--user", required=True, help="the user id (the token's sub, owner of uploads)")
    parser.add_argument("--role", default="tutor", help="the role claim (default: tutor)")
    parser.add_argument("--ttl", type=int, default=86400, help="seconds the token stays valid (default: a day)")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except VidpipeError as error:
        print(f"vidpipe: configuration error: {error}", file=sys.stderr)
        return 2
    if settings.environment == "production":
        print("vidpipe: refusing to mint tokens in production; your auth provider issues them", file=sys.stderr)
        return 2
    if settings.jwt_jwks_url:
        print("vidpipe: VIDPIPE_JWT_JWKS_URL is set, so the API will not accept HS256 tokens", file=sys.stderr)
        return 2
    print(mint(settings, args.user, args.role, ttl_seconds=args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
