"""Notifications: in-app rows, OneSignal pushes against the local stand-in, and outages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from onesignal_sdk.client import Client as OneSignalClient
from onesignal_sdk.error import OneSignalHTTPError

from handlers.errors import PermanentError
from handlers.steps import StepContext, StepJob, StepResult
from local.onesignal import Settings as OneSignalSettings
from local.onesignal import create_app as onesignal_app
from local.onesignal.app import Outbox
from local.onesignal.settings import DEV_APP_ID, DEV_REST_API_KEY
from projections.notifications import NotificationReader
from tests.api.conftest import Client, fake_video
from tests.handlers.conftest import Pipeline
from tests.support import ServedApp, reserve_port, wait_until

Served = Callable[..., Pipeline]
Clients = Callable[..., Client]


@dataclass
class LocalOneSignal:
    served: ServedApp
    outbox: Outbox

    @property
    def url(self) -> str:
        return self.served.url

    def stop(self) -> None:
        self.served.stop()


@pytest.fixture
def onesignal() -> Iterator[Callable[..., LocalOneSignal]]:
    servers: list[LocalOneSignal] = []

    def make(**settings: object) -> LocalOneSignal:
        app = onesignal_app(OneSignalSettings(**settings))
        server = LocalOneSignal(ServedApp(app, reserve_port()), app.state.outbox)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def push_settings(url: str, key: str = DEV_REST_API_KEY) -> dict[str, object]:
    return {"ONESIGNAL_APP_ID": DEV_APP_ID, "ONESIGNAL_REST_API_KEY": key, "ONESIGNAL_API_URL": url}


def deliveries(pipeline: Pipeline, qid: str, count: int) -> list[dict[str, object]]:
    reader = NotificationReader(pipeline.store.view)
    return list(wait_until(lambda: len(rows := reader.deliveries(qid)) >= count and rows, 15,
                           f"{count} delivery attempts of queue {qid}"))


def closed_port_url() -> str:
    sock = reserve_port()
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/api/v1"


def test_the_local_server_speaks_what_the_sdk_uses(onesignal: Callable[..., LocalOneSignal]) -> None:
    server = onesignal()
    client = OneSignalClient(DEV_APP_ID, DEV_REST_API_KEY, options={"API_ROOT": f"{server.url}/api/v1"})
    sent = client.send_notification({"contents": {"en": "hi"}, "include_aliases": {"external_id": ["u1"]}})
    assert sent.status_code == 200 and sent.body["id"]
    assert client.view_notification(sent.body["id"]).body["contents"] == {"en": "hi"}
    assert client.view_notifications().body["total_count"] == 1
    for body, message in (
        ({"include_aliases": {"external_id": ["u1"]}}, "English language content"),
        ({"contents": {"en": "hi"}}, "You must include which players"),
    ):
        with pytest.raises(OneSignalHTTPError) as refused:
            client.send_notification(body)
        assert refused.value.status_code == 400 and message in refused.value.message
    wrong_key = OneSignalClient(DEV_APP_ID, "wrong", options={"API_ROOT": f"{server.url}/api/v1"})
    with pytest.raises(OneSignalHTTPError) as forbidden:
        wrong_key.send_notification({"contents": {"en": "hi"}, "include_external_user_ids": ["u1"]})
    assert forbidden.value.status_code == 403


def test_a_processed_video_notifies_in_app_and_pushes_to_the_owner(
    served: Served, clients: Clients, onesignal: Callable[..., LocalOneSignal]
) -> None:
    server = onesignal()
    pipeline = served(**push_settings(f"{server.url}/api/v1"))
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload(filename="Week 2.mp4").json()["queue_id"]
    tutor.wait_for(qid)
    rows = deliveries(pipeline, qid, 2)
    assert [(r["kind"], r["outcome"], r["attempt"]) for r in rows] == [("started", "delivered", 1), ("completed", "delivered", 1)]
    pushed = server.outbox.all()
    assert [p["include_aliases"] for p in pushed] == [{"external_id": ["tutor-a"]}] * 2
    assert pushed[1]["contents"]["en"] == "“Week 2.mp4” is ready: its transcript and search are available."
    assert pushed[1]["data"] == {"queue_id": qid, "kind": "completed"}
    assert {r["provider_id"] for r in rows} == {p["id"] for p in pushed}
    in_app = wait_until(lambda: len(items := tutor.get("/api/notifications").json()["items"]) == 2 and items, 10)
    assert [n["kind"] for n in in_app] == ["completed", "started"]
    assert all(n["queue_id"] == qid for n in in_app)
    assert clients(pipeline, "tutor-b").get("/api/notifications").json()["items"] == []


def test_an_unreachable_onesignal_leaves_the_queue_completed_and_records_the_failures(
    served: Served, clients: Clients
) -> None:
    pipeline = served(**push_settings(closed_port_url()))
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload().json()["queue_id"]
    assert tutor.wait_for(qid)["status"] == "completed"
    rows = deliveries(pipeline, qid, 4)
    assert [(r["kind"], r["attempt"], r["outcome"]) for r in rows] == [
        ("started", 1, "failed"), ("started", 2, "failed"), ("completed", 1, "failed"), ("completed", 2, "failed"),
    ]
    assert all("OneSignal unreachable" in str(r["detail"]) for r in rows)
    assert [e for e in pipeline.event_names(qid) if e in ("Completed", "Failed")] == ["Completed"]
    assert len(tutor.get("/api/notifications").json()["items"]) == 2
    metrics = tutor.http.get("/metrics").text
    assert 'vidpipe_notification_deliveries_total{channel="onesignal",outcome="failed"} 4.0' in metrics


def test_a_refused_push_is_recorded_and_not_tried_again(
    served: Served, clients: Clients, onesignal: Callable[..., LocalOneSignal]
) -> None:
    server = onesignal()
    pipeline = served(**push_settings(f"{server.url}/api/v1", key="a-wrong-key"))
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload().json()["queue_id"]
    tutor.wait_for(qid)
    rows = deliveries(pipeline, qid, 2)
    assert [(r["kind"], r["attempt"], r["outcome"]) for r in rows] == [("started", 1, "failed"), ("completed", 1, "failed")]
    assert "403" in str(rows[0]["detail"])



def test_an_outage_is_tried_again_up_to_the_configured_attempts(
    served: Served, clients: Clients, onesignal: Callable[..., LocalOneSignal]
) -> None:
    down = onesignal(fail_with_status=503)
    pipeline = served(**push_settings(f"{down.url}/api/v1"), VIDPIPE_ONESIGNAL_ATTEMPTS=3)
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload().json()["queue_id"]
    assert tutor.wait_for(qid)["status"] == "completed"
    rows = deliveries(pipeline, qid, 6)
    assert [(r["kind"], r["attempt"], r["outcome"]) for r in rows] == [
        (kind, attempt, "failed") for kind in ("started", "completed") for attempt in (1, 2, 3)
    ]
    assert "OneSignal answered 503" in str(rows[0]["detail"])


class ScriptedCompressor:
    """Fails ``broken.mp4`` for good, works long on ``long.mp4``, quickly on anything else."""

    name = "scripted"

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        filename = job.options.get("filename")
        if filename == "broken.mp4":
            raise PermanentError("the video has no audio track")
        if filename == "long.mp4":
            context.wait(30)
        return StepResult(provider=self.name)


def test_failed_cancelled_and_progress_notifications(served: Served, clients: Clients) -> None:
    pipeline = served({"compress": ScriptedCompressor()}, VIDPIPE_NOTIFY_PROGRESS=True)
    tutor = clients(pipeline, "tutor-a")
    reader = NotificationReader(pipeline.store.view)

    def kinds(qid: str, count: int) -> list[dict[str, object]]:
        return list(wait_until(lambda: len(r := reader.for_queue(qid)) == count and r, 10, f"{count} notifications"))

    failed = tutor.upload(filename="broken.mp4").json()["queue_id"]
    assert tutor.wait_for(failed)["status"] == "failed"
    rows = wait_until(
        lambda: (r := reader.for_queue(failed)) and r[-1]["kind"] == "failed" and r, 10, "failed notice"
    )
    # compress and audio-convert check the upload side by side: a notice for one step finishing may come first
    assert rows[0]["kind"] == "started" and {r["kind"] for r in rows[1:-1]} <= {"progress"}
    assert rows[-1]["message"] == "Processing of “broken.mp4” failed: the video has no audio track"

    done = tutor.upload(fake_video(seed=5), filename="short.mp4").json()["queue_id"]
    tutor.wait_for(done)
    rows = kinds(done, 6)
    assert [r["kind"] for r in rows] == ["started", "progress", "progress", "progress", "progress", "completed"]
    # compress and audio-convert run side by side, so the steps finish in either order
    assert sorted(r["message"] for r in rows[1:5]) == sorted(
        f"“short.mp4”: {step} finished." for step in ("compress", "audio-convert", "transcribe", "embed")
    )

    cancelled = tutor.upload(fake_video(seed=6), filename="long.mp4").json()["queue_id"]
    tutor.wait_for(cancelled, ("processing",))
    tutor.delete(f"/api/video-processing/status/{cancelled}")
    rows = wait_until(
        lambda: (r := reader.for_queue(cancelled)) and r[-1]["kind"] == "cancelled" and r, 10, "cancelled notice"
    )
    # audio-convert (and the steps after it) may finish while the held-back compress runs
    assert rows[0]["kind"] == "started" and {r["kind"] for r in rows[1:-1]} <= {"progress"}
    assert all("compress" not in r["message"] for r in rows[1:-1])
    assert rows[-1]["message"] == "Processing of “long.mp4” was cancelled."
    newest = tutor.get("/api/notifications", params={"limit": 2}).json()
    assert newest["items"][0]["kind"] == "cancelled" and len(newest["items"]) == 2 and newest["has_more"] is True
