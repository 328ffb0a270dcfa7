"""URL groups (topics) of the local QStash server, through the official Python SDK.

Covers ``/v2/topics`` (upsert/remove endpoints, get, list, delete; the group goes
with its last endpoint), publish/batch/schedules to a group name (one message per
endpoint, each signed for its own URL, tagged topicName/endpointName), deduplication
per endpoint, 404 for an unknown group, the topicName filter of cancel and events,
and persistence across a restart.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError

from tests.local.qstash_support import Destination, ThreadedServer

SDK = Callable[[ThreadedServer | str], QStash]


def _group(sdk: QStash, destination: Destination, name: str = "transcribers") -> None:
    sdk.url_group.upsert_endpoints(
        url_group=name,
        endpoints=[{"url": destination.url("/a"), "name": "a"}, {"url": destination.url("/b")}],
    )


def test_endpoints_get_list_remove_delete(sdk: QStash, destination: Destination) -> None:
    """Protocol: upsert_endpoints creates the group; get/list show it; removing the last
    endpoint removes the group; delete removes it (404 after)."""
    _group(sdk, destination)
    group = sdk.url_group.get("transcribers")
    assert group.name == "transcribers"
    assert [(e.name, e.url) for e in group.endpoints] == [("a", destination.url("/a")), (None, destination.url("/b"))]
    assert [g.name for g in sdk.url_group.list()] == ["transcribers"]
    sdk.url_group.remove_endpoints(url_group="transcribers", endpoints=[{"name": "a"}])
    assert [e.url for e in sdk.url_group.get("transcribers").endpoints] == [destination.url("/b")]
    sdk.url_group.remove_endpoints(url_group="transcribers", endpoints=[{"url": destination.url("/b")}])
    with pytest.raises(QStashError, match="404"):
        sdk.url_group.get("transcribers")
    _group(sdk, destination)
    sdk.url_group.delete("transcribers")
    assert sdk.url_group.list() == []
    with pytest.raises(QStashError, match="404"):
        sdk.url_group.delete("transcribers")


def test_publish_to_a_group_fans_out(sdk: QStash, destination: Destination, http: httpx.Client) -> None:
    """Protocol: publishing to a group name creates one message per endpoint, each delivered
    and signed for its own URL; the answer lists messageId and url per endpoint."""
    _group(sdk, destination)
    results = sdk.message.publish_json(url_group="transcribers", body={"lecture": 7})
    assert isinstance(results, list)
    assert sorted(r.url for r in results) == [destination.url("/a"), destination.url("/b")]
    [a] = destination.wait_for("/a")
    [b] = destination.wait_for("/b")
    assert a.signature_error is None and b.signature_error is None
    assert json.loads(a.body) == json.loads(b.body) == {"lecture": 7}
    by_url = {r.url: r.message_id for r in results}
    assert a.headers["upstash-message-id"] == by_url[destination.url("/a")]
    assert b.headers["upstash-message-id"] == by_url[destination.url("/b")]
    events = http.get("/v2/events", params={"topicName": "transcribers", "state": "DELIVERED"}).json()["events"]
    assert len(events) == 2 and {e["endpointName"] for e in events if "endpointName" in e} == {"a"}


def test_group_dedup_batch_cancel_and_unknown_group(sdk: QStash, destination: Destination, http: httpx.Client) -> None:
    """Protocol: deduplication per endpoint; a batch entry to a group answers a list;
    cancel by topicName; an unknown group is 404."""
    _group(sdk, destination)
    first = sdk.message.publish_json(url_group="transcribers", body={}, delay="1h", deduplication_id="d1")
    again = sdk.message.publish_json(url_group="transcribers", body={}, delay="1h", deduplication_id="d1")
    assert [r.deduplicated for r in again] == [True, True]  # type: ignore[union-attr]
    assert sorted(r.message_id for r in again) == sorted(r.message_id for r in first)  # type: ignore[union-attr]
    [entry] = sdk.message.batch_json([{"url_group": "transcribers", "body": {}, "delay": "1h"}])
    assert isinstance(entry, list) and len(entry) == 2
    assert http.delete("/v2/messages", params={"topicName": "transcribers"}).json() == {"cancelled": 4}
    with pytest.raises(QStashError, match="404"):
        sdk.message.publish_json(url_group="nobody", body={})


def test_schedule_to_a_group(qstash_server: ThreadedServer, sdk: QStash, destination: Destination) -> None:
    """Protocol: a schedule whose destination is a group fans out on each firing."""
    _group(sdk, destination)
    schedule_id = sdk.schedule.create_json(destination="transcribers", cron="0 * * * *", body={"s": 1})
    assert sdk.schedule.get(schedule_id).destination == "transcribers"
    with sqlite3.connect(qstash_server.settings.db_path) as db:  # bring the next slot forward
        db.execute("UPDATE schedules SET next_fire = ? WHERE id = ?", (time.time(), schedule_id))
    [a] = destination.wait_for("/a")
    [b] = destination.wait_for("/b")
    assert a.headers["upstash-schedule-id"] == b.headers["upstash-schedule-id"] == schedule_id


def test_group_survives_a_restart(
    qstash_factory: Callable[..., ThreadedServer], sdk_factory: SDK, destination: Destination
) -> None:
    """Persistence: URL groups are stored in SQLite."""
    first = qstash_factory()
    _group(sdk_factory(first), destination)
    first.stop()
    assert len(sdk_factory(qstash_factory()).url_group.get("transcribers").endpoints) == 2


def test_bad_endpoints_are_400(http: httpx.Client) -> None:
    response = http.post("/v2/topics/g/endpoints", json={"endpoints": [{"url": "not a url"}]})
    assert response.status_code == 400 and "endpoint url" in response.json()["error"]
    assert http.post("/v2/topics/g/endpoints", json={"endpoints": []}).status_code == 400
    assert http.post("/v2/topics/bad%20name/endpoints", json={"endpoints": [{"url": "http://x/"}]}).status_code == 400
