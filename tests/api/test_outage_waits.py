"""During a database outage, requests that reach the event store answer 503 + ``Retry-After``
without waiting out the library's retries (10 × the pool timeout: ~52 s before).

A private Postgres (the shared one must not stop) is stopped while the app
runs. The first request to meet the outage waits the pool timeout once; the
outage gate (:mod:`projections.outage_gate`) then knows the database is down,
and every later try — each of the library's 10 retries of each request — is
refused at once instead of waiting for a connection. The test counts those
refusals (behaviour, not time); the times are printed (the chaos row *long
outage* holds the bound: every answer within 6 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from bench.chaos.private_postgres import PrivatePostgres
from projections import outage_gate
from tests.api.conftest import fake_video
from tests.api.outage_support import (  # noqa: F401 - the fixtures: this module's pipelines run on a private cluster
    Outage,
    assert_database_unavailable,
    database_url,
    outage,
    private_postgres,
)


def gate_of(server: PrivatePostgres) -> outage_gate.OutageGate:
    (gate,) = [g for key, g in outage_gate._gates.items() if key[1] == str(server.port)]  # noqa: SLF001
    return gate


@pytest.mark.postgres
def test_event_store_requests_answer_503_at_once_while_the_database_is_known_down(outage: Outage) -> None:
    tutor, done = outage.tutor, outage.done
    running = tutor.upload(fake_video(seed=2)).json()["queue_id"]

    outage.begin()
    gate = gate_of(outage.server)
    requests: dict[str, Callable[[], httpx.Response]] = {
        "audit trail": lambda: tutor.get(f"/api/video-processing/status/{done}/events"),
        "cancel": lambda: tutor.delete(f"/api/video-processing/status/{running}"),
        "upload": lambda: tutor.upload(fake_video(seed=3)),
        "status": lambda: tutor.get(f"/api/video-processing/status/{done}"),
        "list": lambda: tutor.get("/api/video-processing/queue"),
    }
    started = time.monotonic()
    meets_it = requests["audit trail"]()  # the first to meet the outage waits the pool timeout once
    print(f"first request: {meets_it.status_code} after {time.monotonic() - started:.1f} s")
    assert meets_it.status_code == 503, meets_it.text
    assert gate.down

    for round_ in range(2):
        for name, request in requests.items():
            refused_before = gate.refused
            started = time.monotonic()
            answer = request()
            print(f"round {round_} {name}: {answer.status_code} after {time.monotonic() - started:.2f} s, "
                  f"{gate.refused - refused_before} tries refused by the gate")
            assert_database_unavailable(answer, name)
            assert gate.refused > refused_before  # refused at once, not after waiting for a connection
    assert gate.down

    outage.end()
    assert not gate.down
    events = tutor.get(f"/api/video-processing/status/{done}/events")
    assert events.status_code == 200 and events.json()
    assert outage.process(seed=4)["status"] == "completed"
