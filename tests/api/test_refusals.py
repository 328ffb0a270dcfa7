"""Small refusals of the public API (issue 15 item 6): an Idempotency-Key reused with a different
request (file, attachment_id or options) is 422 naming the key, huge ids are not echoed back whole, and 405 lists every method
the path takes."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

import pytest

from api.uploads import UploadLedger, queue_id_for
from tests.api.conftest import Client, fake_video
from tests.handlers.conftest import Pipeline
from tests.rawhttp import Answer, head, read_answer

Served = Callable[..., Pipeline]
Clients = Callable[..., Client]
PREFIX = "/api/video-processing"
HUGE_ID = "q" * 100_000


def raw(client: Client, method: str, target: str) -> Answer:
    """One request over a raw connection (httpx refuses URLs over 64 KiB)."""

    async def go() -> Answer:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.pipeline.api.port)
        try:
            writer.write(head(method, target, {**client.headers(), "Connection": "close"}))
            return await asyncio.wait_for(read_answer(reader), 30)
        finally:
            writer.close()

    return asyncio.run(go())


def test_a_key_reused_with_other_file_bytes_is_422_naming_the_key(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    first = tutor.upload(fake_video(seed=1), headers={"Idempotency-Key": "upload-42"})
    assert first.status_code == 202
    other_bytes = tutor.upload(fake_video(seed=2), headers={"Idempotency-Key": "upload-42"})
    assert other_bytes.status_code == 422, other_bytes.text
    error = other_bytes.json()["error"]
    assert "Idempotency-Key 'upload-42'" in error and "different file" in error
    assert first.json()["queue_id"] in error
    same = tutor.upload(fake_video(seed=1), headers={"Idempotency-Key": "upload-42"})
    assert same.status_code == 202 and same.json()["queue_id"] == first.json()["queue_id"]
    as_json = tutor.request("POST", f"{PREFIX}/upload", json={"attachment_id": first.json()["attachment_id"]},
                            headers={"Idempotency-Key": "upload-42"})
    assert as_json.status_code == 422 and "an attachment_id where the first sent a file" in as_json.json()["error"]
    assert len([q for q in tutor.get(f"{PREFIX}/queue").json()["items"]]) == 1


def test_a_key_reused_with_another_attachment_id_is_422(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    stored = [tutor.upload(fake_video(seed=s)).json()["attachment_id"] for s in (3, 4)]
    key = {"Idempotency-Key": "attach-1"}
    first = tutor.request("POST", f"{PREFIX}/upload", json={"attachment_id": stored[0]}, headers=key)
    assert first.status_code == 202, first.text
    again = tutor.request("POST", f"{PREFIX}/upload", json={"attachment_id": stored[0]}, headers=key)
    assert again.status_code == 202 and again.json()["queue_id"] == first.json()["queue_id"]
    other = tutor.request("POST", f"{PREFIX}/upload", json={"attachment_id": stored[1]}, headers=key)
    assert other.status_code == 422 and "'attach-1'" in other.json()["error"]
    assert "different attachment_id" in other.json()["error"]


def test_a_retry_after_a_death_with_other_bytes_is_422_not_the_dead_requests_queue(
    served: Served, clients: Clients
) -> None:
    """The key's queue exists (the first request died after creating it) and the claim expired:
    the retry's file is compared with that queue's before it is reused."""
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    ledger = UploadLedger(pipeline.store.view)
    _, claim = ledger.claim("tutor-a", "upload-9")
    ledger.release("tutor-a", "upload-9", claim)
    pipeline.store.app.start_processing(
        "tutor-a", "lost.mp4", {"sha256": hashlib.sha256(fake_video(seed=5)).hexdigest()},
        queue_id=queue_id_for("tutor-a", "upload-9"),
    )
    refused = tutor.upload(fake_video(seed=6), headers={"Idempotency-Key": "upload-9"})
    assert refused.status_code == 422 and "'upload-9'" in refused.json()["error"]
    accepted = tutor.upload(fake_video(seed=5), headers={"Idempotency-Key": "upload-9"})
    assert accepted.status_code == 202 and accepted.json()["reused"] is True


def test_a_key_reused_with_other_options_is_422_naming_them(served: Served, clients: Clients) -> None:
    """Regression: the key's ledger compared the file and ignored the query options, so a retry
    asking for another language silently got the first request's queue (and its language)."""
    pipeline = served(VIDPIPE_TUTOR_LANGUAGES={"tutor-a": "es"})
    tutor = clients(pipeline, "tutor-a")
    key = {"Idempotency-Key": "options-1"}
    first = tutor.upload(fake_video(seed=7), headers=key, params={"language": "es"})
    assert first.status_code == 202, first.text
    qid = first.json()["queue_id"]
    other_language = tutor.upload(fake_video(seed=7), headers=key, params={"language": "fr"})
    assert other_language.status_code == 422, other_language.text
    error = other_language.json()["error"]
    assert "Idempotency-Key 'options-1'" in error and qid in error
    assert "language 'fr' where the first asked for language 'es'" in error
    detected = tutor.upload(fake_video(seed=7), headers=key, params={"language": "auto"})
    assert detected.status_code == 422 and "language auto (detected)" in detected.json()["error"]
    skipping = tutor.upload(fake_video(seed=7), headers=key, params={"language": "es", "skip_compress": "true"})
    assert skipping.status_code == 422
    assert "skip_compress=true where the first asked for skip_compress=false" in skipping.json()["error"]
    both = tutor.upload(fake_video(seed=8), headers=key, params={"skip_compress": "1"})
    assert both.status_code == 422 and "different file" in both.json()["error"]
    assert "skip_compress=true" in both.json()["error"]
    for same in ({"language": "ES"}, {"language": "es", "skip_compress": "false"}, {}):  # {}: the tutor's default
        retried = tutor.upload(fake_video(seed=7), headers=key, params=same)
        assert retried.status_code == 202, (same, retried.text)
        assert retried.json()["queue_id"] == qid and retried.json()["reused"] is True
    assert [q["queue_id"] for q in tutor.get(f"{PREFIX}/queue").json()["items"]] == [qid]
    assert pipeline.events(qid)[0].options["language"] == "es"


def test_a_retry_after_a_death_with_other_options_is_422_not_the_dead_requests_queue(
    served: Served, clients: Clients
) -> None:
    """The key's queue exists (the first request died before recording it) and its claim is gone:
    the retry's options are compared with that queue's, as its file is."""
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    ledger = UploadLedger(pipeline.store.view)
    _, claim = ledger.claim("tutor-a", "upload-10")
    ledger.release("tutor-a", "upload-10", claim)
    attachment = tutor.upload(fake_video(seed=9)).json()["attachment_id"]
    pipeline.store.app.start_processing(
        "tutor-a", attachment, {"skip_compress": True}, queue_id=queue_id_for("tutor-a", "upload-10"),
    )
    key = {"Idempotency-Key": "upload-10"}
    refused = tutor.request("POST", f"{PREFIX}/upload", json={"attachment_id": attachment}, headers=key)
    assert refused.status_code == 422, refused.text
    assert "skip_compress=false where the first asked for skip_compress=true" in refused.json()["error"]
    accepted = tutor.request("POST", f"{PREFIX}/upload", json={"attachment_id": attachment}, headers=key,
                             params={"skip_compress": "true"})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["queue_id"] == str(queue_id_for("tutor-a", "upload-10"))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/status/{id}"),
        ("DELETE", "/status/{id}"),
        ("GET", "/status/{id}/events"),
        ("GET", "/status/{id}/stream"),
        ("GET", "/status/{id}/transcript"),
    ],
)
def test_a_100_kb_queue_id_is_not_echoed_back_whole(served: Served, clients: Clients, method: str, path: str) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    response = raw(tutor, method, PREFIX + path.format(id=HUGE_ID))
    assert response.status == 404, response.body[:300]
    assert len(response.body) < 500
    assert "q" * 64 + "…" in response.json()["error"]


def test_a_100_kb_query_value_is_not_echoed_back_whole(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    response = raw(tutor, "GET", f"{PREFIX}/queue?status={HUGE_ID}")
    assert response.status == 422, response.body[:300]
    assert len(response.body) < 2000


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "PATCH", "POST"])
def test_other_methods_on_a_status_are_405_listing_get_and_delete(
    served: Served, clients: Clients, method: str
) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    response = tutor.request(method, f"{PREFIX}/status/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, DELETE"
    assert "GET, DELETE" in response.json()["error"]


def test_405_lists_the_methods_of_the_path_asked_about(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    upload = tutor.request("GET", f"{PREFIX}/upload")
    assert upload.status_code == 405 and upload.headers["Allow"] == "POST"
    events = tutor.request("DELETE", f"{PREFIX}/status/x/events")
    assert events.status_code == 405 and events.headers["Allow"] == "GET"
