"""Who is calling: a bearer JWT, verified with a shared secret or the issuer's JWKS.

- HS256 with ``VIDPIPE_JWT_SECRET`` (NextAuth with a custom ``encode``,
  Supabase's project secret, ``python -m api.token`` in development), or any
  asymmetric algorithm with keys from ``VIDPIPE_JWT_JWKS_URL``;
- ``sub`` is the owner id of everything the caller uploads;
- the role is read at ``VIDPIPE_JWT_ROLE_CLAIM`` (a dotted path:
  ``role`` for NextAuth, ``app_metadata.role`` for Supabase; a list of roles
  also works) and must be ``VIDPIPE_JWT_REQUIRED_ROLE`` (``tutor``).

A missing, expired or badly signed token is 401; a valid token with another
role is 403. The step webhooks never see this: QStash signs those.

A token that verified is remembered (the exact string, at most
:data:`VERIFIED_SECONDS` and never past its ``exp``): a client polling the
status sends the same token again and again, and decoding it each time cost
about 7 % of a status read's CPU. Anything else is verified in full.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import Forbidden, Unauthorized, Unavailable
from api.settings import Settings

ASYMMETRIC_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]
MAX_OWNER_ID_LENGTH = 128
VERIFIED_SECONDS = 60.0
"""Longest a verified token is taken again without verifying it (JWKS key rotation takes effect within this)."""
VERIFIED_TOKENS = 4096
"""Most verified tokens remembered (the oldest is forgotten first)."""

bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="A JWT whose role claim is `tutor`; `python -m api.token` mints one in development.",
)


@dataclass(frozen=True)
class Caller:
    """The verified caller: the owner id (``sub``) and the role found in the token."""

    owner_id: str
    role: str


def claim_at(claims: dict[str, Any], path: str) -> Any:
    """The claim at a dotted ``path`` (``app_metadata.role``), or None."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class TokenVerifier:
    """Verifies bearer tokens as configured; one per app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._verified: dict[str, tuple[Caller, float]] = {}
        """Tokens that verified: the caller, and until when (epoch seconds) it is taken without verifying."""
        self._jwks: jwt.PyJWKClient | None = None
        if settings.jwt_jwks_url:
            self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, timeout=5)

    @property
    def may_block(self) -> bool:
        """Verifying may wait on the network (JWKS keys); with a shared secret it is CPU only."""
        return self._jwks is not None

    def remembered(self, token: str) -> Caller | None:
        """The caller of ``token`` if it verified lately (and has not expired), else None."""
        known = self._verified.get(token)
        return known[0] if known is not None and time.time() < known[1] else None

    def verify(self, token: str) -> Caller:
        caller = self.remembered(token)
        if caller is not None:
            return caller
        caller, claims = self._verify(token)
        expires = claims.get("exp")
        if isinstance(expires, (int, float)):
            if len(self._verified) >= VERIFIED_TOKENS:
                try:
                    del self._verified[next(iter(self._verified))]
                except (KeyError, RuntimeError, StopIteration):  # another thread changed it meanwhile
                    pass
            self._verified[token] = (caller, min(float(expires), time.time() + VERIFIED_SECONDS))
        return caller

    def _verify(self, token: str) -> tuple[Caller, dict[str, Any]]:
        claims = self._decode(token)
        owner = claims.get("sub")
        if not isinstance(owner, str) or not owner.strip() or len(owner) > MAX_OWNER_ID_LENGTH:
            raise Unauthorized("the token's sub claim must name the user (a non-empty string)")
        role = claim_at(claims, self.settings.jwt_role_claim)
        required = self.settings.jwt_required_role
        roles = role if isinstance(role, list) else [role]
        if required not in roles:
            raise Forbidden(
                f"this API is for the {required} role; the token's "
                f"{self.settings.jwt_role_claim} claim is {role!r}"
            )
        return Caller(owner_id=owner, role=required), claims

    def _decode(self, token: str) -> dict[str, Any]:
        s = self.settings
        try:
            if self._jwks is not None:
                key: Any = self._jwks.get_signing_key_from_jwt(token).key
                algorithms = ASYMMETRIC_ALGORITHMS
            else:
                key, algorithms = s.jwt_secret.get_secret_value(), ["HS256"]
            return jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                options={"require": ["exp", "sub"], "verify_aud": s.jwt_audience is not None},
                leeway=10,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired; sign in again") from None
        except jwt.PyJWKClientConnectionError as error:
            raise Unavailable(f"cannot fetch the token signing keys from the JWKS URL: {error}") from None
        except (jwt.InvalidTokenError, jwt.PyJWKClientError) as error:
            raise Unauthorized(f"invalid token: {error}") from None


def _verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier


async def current_tutor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Caller:
    """The caller, who must hold a valid token with the tutor role.

    Verified on the event loop (an HMAC takes microseconds) unless keys may have to be fetched
    from the JWKS URL: a hop to the thread pool per request made a flood of requests queue
    there, in front of every other synchronous endpoint."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized("missing bearer token: send Authorization: Bearer <JWT>")
    verifier = _verifier(request)
    caller = verifier.remembered(credentials.credentials)
    if caller is not None:
        return caller
    if verifier.may_block:
        return await run_in_threadpool(verifier.verify, credentials.credentials)
    return verifier.verify(credentials.credentials)


CurrentTutor = Annotated[Caller, Depends(current_tutor)]
