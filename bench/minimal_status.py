"""The minimal status endpoints that ``bench/status_reads.py`` measures vidpipe against.

Each verifies an HS256 JWT as vidpipe is configured to (secret, role claim,
required role, audience, issuer, 10 s leeway: passed in the environment by the
benchmark, from vidpipe's ``Settings``), reads the queue's row of vidpipe's
status view (``video_processing_queue_status``) on an autocommit connection
whose ``search_path`` is the schema (one round trip), answers 404 unless the
token's ``sub`` owns it, and returns the row as FastAPI encodes a dict:

- ``sync``: a plain ``def`` route and psycopg_pool's ``ConnectionPool``
  (FastAPI runs the route in its thread pool);
- ``async``: an ``async def`` route and psycopg_pool's ``AsyncConnectionPool``.

``python -m bench.minimal_status sync|async --port N --database-url URL``
serves one under uvicorn with vidpipe's server settings (one worker, its
keep-alive, its header buffer). Nothing of vidpipe is imported but the
database URL parser, so it starts quickly.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import asynccontextmanager
from typing import Any

import jwt
import psycopg
import psycopg_pool
import uvicorn
from fastapi import FastAPI, Header, HTTPException
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

from projections.database import DatabaseUrl

PREFIX = "/status/"
KEEP_ALIVE_SECONDS = 75
"""As ``api.__main__.KEEP_ALIVE_SECONDS`` (the smoke test holds them equal)."""
H11_MAX_INCOMPLETE_EVENT_SIZE = 1024 * 1024
"""As ``api.limits.HTTP_PARSER_HEADER_BYTES`` (the smoke test holds them equal)."""
POOL_SIZE = 10
"""Connections of each minimal endpoint's pool, all opened at start (vidpipe's read pool can reach as many)."""
QUERY = "SELECT * FROM video_processing_queue_status WHERE queue_id = %s"


def minimal_app(database_url: str, variant: str, env: dict[str, str] | None = None) -> FastAPI:
    env = dict(os.environ if env is None else env)
    secret = env["MINIMAL_JWT_SECRET"]
    audience = env.get("MINIMAL_JWT_AUDIENCE") or None
    issuer = env.get("MINIMAL_JWT_ISSUER") or None
    role_path = env.get("MINIMAL_JWT_ROLE_CLAIM", "role").split(".")
    required_role = env.get("MINIMAL_JWT_REQUIRED_ROLE", "tutor")
    url = DatabaseUrl.parse(database_url)
    set_path = SQL("SET search_path TO {}").format(Identifier(url.schema))
    pool_kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row}

    def owner(authorization: str) -> str:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "missing bearer token")
        try:
            claims = jwt.decode(
                token, secret, algorithms=["HS256"], audience=audience, issuer=issuer,
                options={"require": ["exp", "sub"], "verify_aud": audience is not None}, leeway=10,
            )
        except jwt.InvalidTokenError as error:
            raise HTTPException(401, str(error)) from None
        role: Any = claims
        for part in role_path:
            role = role.get(part) if isinstance(role, dict) else None
        if required_role not in (role if isinstance(role, list) else [role]):
            raise HTTPException(403, "not a tutor")
        return str(claims["sub"])

    def checked(row: dict[str, Any] | None, sub: str) -> dict[str, Any]:
        if row is None or row["owner_id"] != sub:
            raise HTTPException(404, "no such queue")
        return row

    if variant == "sync":
        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.execute(set_path)

        pool = psycopg_pool.ConnectionPool(url.conninfo(), min_size=POOL_SIZE, max_size=POOL_SIZE, configure=configure,
                                           kwargs=pool_kwargs, open=False)

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> Any:
            pool.open()
            yield
            pool.close()

        app = FastAPI(lifespan=lifespan)

        @app.get(PREFIX + "{queue_id}")
        def status(queue_id: str, authorization: str = Header("")) -> dict[str, Any]:
            sub = owner(authorization)
            with pool.connection() as conn:
                return checked(conn.execute(QUERY, (queue_id,)).fetchone(), sub)

        return app

    async def aconfigure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(set_path)

    apool = psycopg_pool.AsyncConnectionPool(url.conninfo(), min_size=POOL_SIZE, max_size=POOL_SIZE, configure=aconfigure,
                                             kwargs=pool_kwargs, open=False)

    @asynccontextmanager
    async def alifespan(_: FastAPI) -> Any:
        await apool.open()
        yield
        await apool.close()

    app = FastAPI(lifespan=alifespan)

    @app.get(PREFIX + "{queue_id}")
    async def astatus(queue_id: str, authorization: str = Header("")) -> dict[str, Any]:
        sub = owner(authorization)
        async with apool.connection() as conn:
            cursor = await conn.execute(QUERY, (queue_id,))
            return checked(await cursor.fetchone(), sub)

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description="a minimal status endpoint (bench/status_reads.py)")
    parser.add_argument("variant", choices=("sync", "async"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    config = uvicorn.Config(
        minimal_app(args.database_url, args.variant), host="127.0.0.1", port=args.port, log_config=None,
        log_level="warning", timeout_graceful_shutdown=10, timeout_keep_alive=KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=H11_MAX_INCOMPLETE_EVENT_SIZE,
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
