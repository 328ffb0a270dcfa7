"""Cron schedules of the local QStash server, through the official Python SDK.

Covers ``POST /v2/schedules/{destination}`` (``Upstash-Cron``, ``Upstash-Schedule-Id``,
``Upstash-Queue-Name`` and every publish header), get/list/delete/pause/resume,
firing (a signed delivery per cron slot, with ``Upstash-Schedule-Id``), persistence
across restarts, and the cron grammar (``local.qstash.cron``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timezone

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError

from local.qstash.cron import CronError, parse_cron
from tests.local.qstash_support import Destination, ThreadedServer, wait_until

SDK = Callable[[ThreadedServer | str], QStash]


def _bring_forward(server: ThreadedServer, schedule_id: str) -> None:
    """Make the schedule's next cron slot arrive now (instead of waiting up to a minute)."""
    with sqlite3.connect(server.settings.db_path) as db:
        db.execute("UPDATE schedules SET next_fire = ? WHERE id = ?", (time.time(), schedule_id))


def test_create_get_list_and_fire(qstash_server: ThreadedServer, sdk: QStash, destination: Destination) -> None:
    """Protocol: a schedule stores the publish request; each cron slot publishes it again:
    a signed delivery with the body, forwarded headers, method and Upstash-Schedule-Id; the
    next slot is the cron's next minute."""
    schedule_id = sdk.schedule.create_json(
        destination=destination.url("/nightly"),
        cron="*/5 * * * *",
        body={"job": "reindex"},
        method="PUT",
        headers={"X-Tenant": "t1"},
        retries=2,
        label="maintenance",
    )
    schedule = sdk.schedule.get(schedule_id)
    assert schedule.cron == "*/5 * * * *" and schedule.method == "PUT" and schedule.retries == 2
    assert schedule.destination == destination.url("/nightly")
    assert schedule.paused is False and schedule.label == "maintenance"
    assert schedule.next_schedule_time is not None and schedule.next_schedule_time % 300_000 == 0
    assert [s.schedule_id for s in sdk.schedule.list()] == [schedule_id]

    _bring_forward(qstash_server, schedule_id)
    [received] = destination.wait_for("/nightly", timeout=3)
    assert received.signature_error is None
    assert received.method == "PUT" and json.loads(received.body) == {"job": "reindex"}
    assert received.headers["x-tenant"] == "t1"
    assert received.headers["upstash-schedule-id"] == schedule_id
    after = sdk.schedule.get(schedule_id)
    assert after.last_schedule_time is not None
    assert after.next_schedule_time is not None and after.next_schedule_time > time.time() * 1000
    time.sleep(0.3)
    assert len(destination.requests_to("/nightly")) == 1  # one firing per slot


def test_pause_resume_delete(qstash_server: ThreadedServer, sdk: QStash, destination: Destination) -> None:
    """Protocol: a paused schedule does not fire; resume does; delete removes it (404 after)."""
    schedule_id = sdk.schedule.create(destination=destination.url("/paused"), cron="0 3 * * *", body=b"x")
    sdk.schedule.pause(schedule_id)
    assert sdk.schedule.get(schedule_id).paused is True
    _bring_forward(qstash_server, schedule_id)
    time.sleep(0.4)
    assert destination.requests_to("/paused") == []
    sdk.schedule.resume(schedule_id)
    assert sdk.schedule.get(schedule_id).paused is False
    sdk.schedule.delete(schedule_id)
    with pytest.raises(QStashError, match="404"):
        sdk.schedule.get(schedule_id)
    with pytest.raises(QStashError, match="404"):
        sdk.schedule.delete(schedule_id)


def test_schedule_id_upserts_and_queue(qstash_server: ThreadedServer, sdk: QStash, destination: Destination) -> None:
    """Protocol: Upstash-Schedule-Id names the schedule (creating it again updates it);
    Upstash-Queue-Name enqueues each firing into that FIFO queue."""
    sdk.schedule.create_json(destination=destination.url("/v1"), cron="0 * * * *", body={}, schedule_id="hourly")
    sdk.schedule.create_json(destination=destination.url("/v2"), cron="30 * * * *", body={"v": 2},
                             schedule_id="hourly", queue="reports")
    [schedule] = sdk.schedule.list()
    assert schedule.schedule_id == "hourly" and schedule.cron == "30 * * * *"
    assert schedule.destination == destination.url("/v2") and schedule.queue == "reports"
    _bring_forward(qstash_server, "hourly")
    [received] = destination.wait_for("/v2", timeout=3)
    assert json.loads(received.body) == {"v": 2}
    assert sdk.queue.get("reports").name == "reports"


@pytest.mark.parametrize(
    ("headers", "mentions"),
    [
        ({}, "Upstash-Cron is required"),
        ({"Upstash-Cron": "every minute"}, "5 fields"),
        ({"Upstash-Cron": "0 0 30 2 *"}, "never fires"),
        ({"Upstash-Cron": "* * * * *", "Upstash-Delay": "soon"}, "Upstash-Delay"),
        ({"Upstash-Cron": "* * * * *", "Upstash-Schedule-Id": "a b"}, "Upstash-Schedule-Id"),
    ],
)
def test_bad_schedule_is_400(http: httpx.Client, destination: Destination, headers: dict[str, str], mentions: str) -> None:
    """Protocol: a bad cron or publish header is 400 naming it; nothing is created."""
    response = http.post(f"/v2/schedules/{destination.url('/bad')}", content=b"{}", headers=headers)
    assert response.status_code == 400
    assert mentions in response.json()["error"]
    assert http.get("/v2/schedules").json() == []


def test_schedule_survives_a_restart(
    qstash_factory: Callable[..., ThreadedServer], sdk_factory: SDK, destination: Destination
) -> None:
    """Persistence: a schedule (and its paused flag) is still there after a restart and fires."""
    first = qstash_factory()
    schedule_id = sdk_factory(first).schedule.create_json(destination=destination.url("/kept"), cron="15 4 * * *", body={})
    first.stop()
    second = qstash_factory()
    sdk = sdk_factory(second)
    assert sdk.schedule.get(schedule_id).cron == "15 4 * * *"
    _bring_forward(second, schedule_id)
    destination.wait_for("/kept", timeout=3)


@pytest.mark.slow
def test_a_schedule_fires_on_its_own_cron(sdk: QStash, destination: Destination) -> None:
    """Protocol, without shortcuts: '* * * * *' fires at the next minute boundary."""
    sdk.schedule.create_json(destination=destination.url("/minutely"), cron="* * * * *", body={})
    [received] = destination.wait_for("/minutely", timeout=65)
    fired = datetime.fromtimestamp(received.at, timezone.utc)
    assert fired.second < 3
    assert received.signature_error is None


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("* * * * *", "2026-12-04T04:20:30", "2026-12-04T04:21:00"),
        ("*/15 * * * *", "2026-12-04T04:20:00", "2026-12-04T04:30:00"),
        ("0 9 * * MON-FRI", "2026-12-05T10:00:00", "2026-12-07T09:00:00"),
        ("30 2 1 JAN,JUL *", "2026-12-04T00:00:00", "2027-01-01T02:30:00"),
        ("0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
        ("0 12 1 * SUN", "2026-12-04T00:00:00", "2026-12-06T12:00:00"),  # day-of-month OR weekday
        ("0 0 * * 7", "2026-12-04T00:00:00", "2026-12-06T00:00:00"),  # 7 is Sunday
        ("CRON_TZ=Europe/Berlin 0 9 * * *", "2026-12-04T00:00:00", "2026-12-04T08:00:00"),
    ],
)
def test_cron_next_fire(cron: str, after: str, expected: str) -> None:
    """The cron grammar: next fire time after a moment (UTC unless CRON_TZ)."""
    moment = datetime.fromisoformat(after).replace(tzinfo=timezone.utc).timestamp()
    fire = datetime.fromtimestamp(parse_cron(cron).next_after(moment), timezone.utc)
    assert fire == datetime.fromisoformat(expected).replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("cron", ["* * * *", "60 * * * *", "* 24 * * *", "*/0 * * * *", "5-1 * * * *",
                                  "CRON_TZ=Nowhere/Land * * * * *", "0 0 31 4 *"])
def test_cron_refuses_bad_expressions(cron: str) -> None:
    with pytest.raises(CronError):
        parse_cron(cron)
