"""A database outage is a 503 with ``Retry-After``, never a 500, and the service recovers on its own.

The served app runs on a private Postgres cluster (restarting the shared test
server would break the other tests), which the test stops with ``-m
immediate`` (a crash) while the app keeps running, then starts again: the
public routes must answer 503 + ``Retry-After`` + ``{"error"}`` meanwhile,
``/readyz`` must say not ready, and afterwards the same process (its pools,
followers and dispatcher) must serve and process again without a restart.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import psycopg_pool
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError, ProgrammingError
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import DATABASE_RETRY_AFTER_SECONDS, database_unavailable, install_error_handlers
from projections.database import DatabaseUrl
from tests.api.conftest import fake_video
from tests.api.outage_support import (  # noqa: F401 - the fixtures: this module's pipelines run on a private cluster
    Outage,
    assert_database_unavailable,
    database_url,
    outage,
    private_postgres,
)


def wrapped(cause: BaseException, wrapper: type[Exception] = OperationalError) -> Exception:
    """``cause`` wrapped the way the eventsourcing library wraps driver errors."""
    try:
        raise wrapper(str(cause)) from cause
    except Exception as error:  # noqa: BLE001 - returned for the test
        return error


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (wrapped(psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec")), True),
        (wrapped(psycopg.OperationalError("server closed the connection unexpectedly")), True),
        (psycopg.OperationalError("connection refused"), True),
        (OperationalError("terminating connection due to administrator command"), True),
        (wrapped(sqlite3.OperationalError("database is locked")), True),
        (wrapped(sqlite3.OperationalError("no such table: video_processing_queue")), False),
        (wrapped(psycopg.errors.UndefinedTable("relation does not exist"), ProgrammingError), False),
        (IntegrityError("duplicate key value violates unique constraint"), False),
        (ValueError("not a database error"), False),
    ],
)
def test_database_unavailable_tells_outages_from_bugs(error: BaseException, unavailable: bool) -> None:
    assert database_unavailable(error) is unavailable


def test_outage_answers_503_with_retry_after_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/down")
    def down() -> None:
        raise wrapped(psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec"))

    @app.get("/bug")
    def bug() -> None:
        raise wrapped(psycopg.errors.UndefinedTable("relation does not exist"), ProgrammingError)

    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.WARNING, "api.errors"):
        answers = [client.get("/down") for _ in range(3)]
        bug_answer = client.get("/bug")
    for answer in answers:
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == str(DATABASE_RETRY_AFTER_SECONDS)
        assert "database is unavailable" in answer.json()["error"]
    assert bug_answer.status_code == 500
    outage_lines = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(outage_lines) == 1 and outage_lines[0].levelno == logging.WARNING
    assert outage_lines[0].exc_info is None  # one line, not a stack trace per request


def test_postgres_pools_look_for_a_lost_server_every_second(caplog: pytest.LogCaptureFixture) -> None:
    """Without the cap psycopg_pool waits 1, 2, 4, 8 ... s between attempts, so the API would keep
    answering 503 long after a restarted server is back (0, 1, 3 s: three attempts in 6 s)."""
    DatabaseUrl.parse("postgresql://postgres@127.0.0.1/vidpipe").event_store_env()  # what every Postgres user calls
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with caplog.at_level(logging.WARNING, "psycopg.pool"):
        pool = psycopg_pool.ConnectionPool(f"host=127.0.0.1 port={port} connect_timeout=1", min_size=1, open=False)
        pool.open(wait=False)
        try:
            time.sleep(6)
        finally:
            pool.close(timeout=1)
    attempts = [r for r in caplog.records if r.getMessage().startswith("error connecting")]
    assert len(attempts) >= 5, [r.getMessage() for r in attempts]


@pytest.mark.postgres
def test_public_api_answers_503_during_a_postgres_outage_and_recovers_without_a_restart(outage: Outage) -> None:
    tutor = outage.tutor
    outage.begin()
    requests: list[Callable[[], httpx.Response]] = [
        lambda: tutor.get(f"/api/video-processing/status/{outage.done}"),
        lambda: tutor.get("/api/video-processing/queue"),
        lambda: tutor.upload(fake_video(seed=2)),
        lambda: tutor.http.get("/readyz"),
    ]
    with ThreadPoolExecutor(len(requests)) as pool:  # each waits for the pool's connection timeout
        status, listing, upload, ready = pool.map(lambda request: request(), requests)
    for answer in (status, listing, upload):
        assert_database_unavailable(answer)
    assert ready.status_code == 503 and ready.json()["failed"] == ["database"]

    outage.end()
    assert tutor.http.get("/readyz").status_code == 200
    # the dispatcher, the step webhooks and the status projection all work again in the same process
    assert outage.process(seed=3)["progress_percentage"] == 100
