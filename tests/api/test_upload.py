"""``POST /api/video-processing/upload`` over real HTTP: both forms, limits, idempotency, re-uploads."""

from __future__ import annotations

import hashlib
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import api.routes.uploads
import api.uploads
from api.uploads import CLAIM_TTL, ReceivedFile, UploadLedger, queue_id_for

from handlers.providers.simulated import SimulatedProvider
from handlers.storage import upload_key
from tests.api.conftest import VIDEO_HEAD, Client, fake_video
from tests.handlers.conftest import Pipeline

Served = Callable[..., Pipeline]
Clients = Callable[..., Client]
UPLOAD = "/api/video-processing/upload"


def stored_uploads(pipeline: Pipeline, owner: str) -> list[str]:
    folder = Path(pipeline.settings.storage_dir) / owner / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def created_options(pipeline: Pipeline, qid: str) -> dict[str, object]:
    return dict(pipeline.events(qid)[0].options)


def test_a_multipart_video_is_streamed_to_storage_and_processed(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    video = fake_video(300_000)
    response = tutor.upload(video, filename="Week 1 lecture.mp4")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] in ("pending", "processing") and body["reused"] is False
    assert body["attachment_id"].endswith(".mp4")
    key = upload_key("tutor-a", body["attachment_id"])
    assert (Path(pipeline.settings.storage_dir) / key).read_bytes() == video
    options = created_options(pipeline, body["queue_id"])
    assert options["source"] == key and options["filename"] == "Week 1 lecture.mp4"
    assert options["size_bytes"] == len(video)
    assert pipeline.events(body["queue_id"])[0].max_retries == pipeline.settings.max_retries
    assert tutor.wait_for(body["queue_id"])["status"] == "completed"


def test_an_existing_attachment_starts_a_queue_and_a_missing_one_is_404(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    first = tutor.upload().json()
    again = tutor.request("POST", UPLOAD, json={"attachment_id": first["attachment_id"]})
    assert again.status_code == 202, again.text
    assert again.json()["queue_id"] != first["queue_id"]
    assert created_options(pipeline, again.json()["queue_id"])["source"] == upload_key("tutor-a", first["attachment_id"])
    other = clients(pipeline, "tutor-b").request("POST", UPLOAD, json={"attachment_id": first["attachment_id"]})
    assert other.status_code == 404 and "not among your uploads" in other.json()["error"]
    cases = {
        '{"attachment_id": "nope.mp4"}': 404,
        '{"attachment_id": "../tutor-b/x"}': 422,
        '{"attachment_id": 7}': 422,
        "[]": 422,
        "{not json": 400,
    }
    for raw, status in cases.items():
        response = tutor.request("POST", UPLOAD, content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == status, (raw, response.text)
        assert response.json()["error"]


def test_oversized_uploads_are_413_and_leave_nothing_behind(served: Served, clients: Clients) -> None:
    pipeline = served(VIDPIPE_MAX_UPLOAD_BYTES=100_000)
    tutor = clients(pipeline, "tutor-a")
    declared = tutor.upload(fake_video(300_000))
    assert declared.status_code == 413 and "100000" in declared.json()["error"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: only the streaming check can catch it
        boundary = b"--vidpipe-test-boundary"
        yield boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        yield b"Content-Type: video/mp4\r\n\r\n" + VIDEO_HEAD
        for _ in range(20):
            yield b"\x00" * 10_000
        yield b"\r\n" + boundary + b"--\r\n"

    streamed = tutor.request("POST", UPLOAD, content=chunked(),
                             headers={"Content-Type": "multipart/form-data; boundary=vidpipe-test-boundary"})
    assert streamed.status_code == 413, streamed.text
    assert "VIDPIPE_MAX_UPLOAD_BYTES" in streamed.json()["error"]
    assert stored_uploads(pipeline, "tutor-a") == []
    assert tutor.get("/api/video-processing/queue").json()["items"] == []


def test_anything_but_a_video_is_415(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    refused = {
        "notes.txt": tutor.upload(filename="notes.txt", content_type="text/plain"),
        "declared image": tutor.upload(filename="lecture.mp4", content_type="image/png"),
        "wrong magic": tutor.upload(b"This is plain text, not a video at all." * 10, filename="lecture.mp4"),
        "empty": tutor.upload(b"", filename="lecture.mp4"),
        "text body": tutor.request("POST", UPLOAD, content=b"hello", headers={"Content-Type": "text/plain"}),
    }
    for why, response in refused.items():
        assert response.status_code == 415, (why, response.text)
        assert response.json()["error"]
    assert "does not look like a video" in refused["wrong magic"].json()["error"]
    no_file = tutor.request("POST", UPLOAD, files={"other": ("a.mp4", fake_video(), "video/mp4")})
    assert no_file.status_code == 422 and "'file'" in no_file.json()["error"]
    broken = tutor.request("POST", UPLOAD, content=b"garbage",
                           headers={"Content-Type": "multipart/form-data"})
    assert broken.status_code == 400 and "boundary" in broken.json()["error"]
    assert stored_uploads(pipeline, "tutor-a") == []
    for extension, head in ((".webm", b"\x1a\x45\xdf\xa3"), (".avi", b"RIFF\x00\x00\x00\x00AVI LIST")):
        accepted = tutor.upload(head + b"\x01" * 5000, filename=f"lecture{extension}", content_type="application/octet-stream")
        assert accepted.status_code == 202, (extension, accepted.text)


def test_the_same_idempotency_key_answers_with_the_same_queue(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor, other = clients(pipeline, "tutor-a"), clients(pipeline, "tutor-b")
    first = tutor.upload(fake_video(seed=1), headers={"Idempotency-Key": "upload-42"})
    second = tutor.upload(fake_video(seed=1), filename="renamed.mp4", headers={"Idempotency-Key": "upload-42"})
    assert first.status_code == second.status_code == 202
    assert second.json()["queue_id"] == first.json()["queue_id"] and second.json()["reused"] is True
    assert len(stored_uploads(pipeline, "tutor-a")) == 1
    theirs = other.upload(fake_video(seed=1), headers={"Idempotency-Key": "upload-42"})
    assert theirs.status_code == 202 and theirs.json()["queue_id"] != first.json()["queue_id"]
    refused = tutor.upload(b"not a video" * 100, headers={"Idempotency-Key": "upload-43"})
    assert refused.status_code == 415
    retried = tutor.upload(fake_video(seed=3), headers={"Idempotency-Key": "upload-43"})
    assert retried.status_code == 202 and retried.json()["reused"] is False  # a refused request frees its key


def test_a_retry_after_the_process_died_mid_request_gets_its_one_queue(served: Served, clients: Clients) -> None:
    """Regression (``make chaos``, process deaths): a request SIGKILLed after claiming its
    Idempotency-Key left a claim that answered every retry 409 for 15 minutes, and one
    killed after creating its queue but before recording it made the retry start a second."""
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    ledger = UploadLedger(pipeline.store.view)
    _, claim = ledger.claim("tutor-a", "upload-7")  # the dead request: claimed, created its queue, never answered
    queue_id = pipeline.store.app.start_processing(
        "tutor-a", "lost.mp4", {"sha256": hashlib.sha256(fake_video(seed=5)).hexdigest()},
        queue_id=queue_id_for("tutor-a", "upload-7"),
    )
    blocked = tutor.upload(fake_video(seed=5), headers={"Idempotency-Key": "upload-7"})
    assert blocked.status_code == 409 and int(blocked.headers["Retry-After"]) > 0
    with ledger.view.session() as session:  # nobody renews the dead request's claim: CLAIM_TTL passes
        session.execute(
            "UPDATE video_processing_idempotency SET created_at = :at WHERE claim = :claim",
            {"at": (datetime.now(timezone.utc) - CLAIM_TTL * 1.1).isoformat(), "claim": claim},
        )
    retried = tutor.upload(fake_video(seed=5), headers={"Idempotency-Key": "upload-7"})
    assert retried.status_code == 202, retried.text
    assert retried.json()["queue_id"] == str(queue_id) and retried.json()["reused"] is True
    assert stored_uploads(pipeline, "tutor-a") == []  # the retry's copy is not kept
    again = tutor.upload(fake_video(seed=5), headers={"Idempotency-Key": "upload-7"})
    assert again.json()["queue_id"] == str(queue_id)
    assert pipeline.store.app.start_processing("tutor-a", "x.mp4", queue_id=queue_id) == queue_id
    assert [type(e).__name__ for e in pipeline.events(str(queue_id))].count("Created") == 1


def test_the_same_bytes_after_a_death_between_record_and_queue_start_that_queue(
    served: Served, clients: Clients
) -> None:
    """Regression: the upload's row is written before its queue is started, so a process death
    in between leaves a row whose queue the next upload of the same bytes starts (with the first
    copy), not a second queue (before, the queue came first and a death left no trace of it)."""
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    video = fake_video(seed=11)
    first_key = upload_key("tutor-a", "first.mp4")
    (Path(pipeline.settings.storage_dir) / first_key).parent.mkdir(parents=True)
    (Path(pipeline.settings.storage_dir) / first_key).write_bytes(video)
    queue_id = "5b0e7c1e-1111-4222-8333-444455556666"
    UploadLedger(pipeline.store.view).record("tutor-a", queue_id, ReceivedFile(
        "first.mp4", first_key, "week 1.mp4", len(video), hashlib.sha256(video).hexdigest()))
    again = tutor.upload(video)
    assert again.status_code == 202, again.text
    assert again.json()["queue_id"] == queue_id and again.json()["reused"] is True
    assert created_options(pipeline, queue_id)["source"] == first_key
    assert stored_uploads(pipeline, "tutor-a") == ["first.mp4"]
    assert tutor.wait_for(queue_id)["status"] == "completed"
    assert [q["queue_id"] for q in tutor.get("/api/video-processing/queue").json()["items"]] == [queue_id]


def test_a_slow_upload_keeps_its_key_claimed(
    served: Served, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim of a running request is renewed, so it outlives CLAIM_TTL while the bytes arrive."""
    monkeypatch.setattr(api.routes.uploads, "CLAIM_RENEW_SECONDS", 0.2)
    monkeypatch.setattr(api.uploads, "CLAIM_TTL", timedelta(seconds=1))
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    key = {"Idempotency-Key": "slow-1"}
    halfway = threading.Event()

    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.mp4"\r\n\r\n' + VIDEO_HEAD
        halfway.set()
        time.sleep(2.5)  # over twice the TTL with no bytes
        yield b"\x00" * 1000 + b"\r\n--b--\r\n"

    answers: list[int] = []
    slow = threading.Thread(target=lambda: answers.append(tutor.request(
        "POST", UPLOAD, content=body(), headers={**key, "Content-Type": "multipart/form-data; boundary=b"},
    ).status_code))
    slow.start()
    assert halfway.wait(10)
    time.sleep(1.8)
    meanwhile = tutor.upload(fake_video(seed=9), headers=key)
    slow.join(30)
    assert meanwhile.status_code == 409, meanwhile.text
    assert answers == [202]


def test_the_same_file_again_reuses_its_queue_until_that_queue_failed_or_was_cancelled(
    served: Served, clients: Clients
) -> None:
    pipeline = served({"compress": SimulatedProvider(seconds=30, ticks=30)})
    tutor = clients(pipeline, "tutor-a")
    video = fake_video(seed=7)
    first = tutor.upload(video).json()
    second = tutor.upload(video, filename="renamed.mp4").json()
    assert second["queue_id"] == first["queue_id"] and second["reused"] is True
    assert stored_uploads(pipeline, "tutor-a") == [first["attachment_id"]]
    theirs = clients(pipeline, "tutor-b")
    their_queue = theirs.upload(video).json()
    assert their_queue["reused"] is False
    tutor.wait_for(first["queue_id"], ("processing",))
    assert tutor.delete(f"/api/video-processing/status/{first['queue_id']}").status_code == 200
    tutor.wait_for(first["queue_id"], ("cancelled",))
    third = tutor.upload(video).json()
    assert third["queue_id"] != first["queue_id"] and third["reused"] is False
    for client, queue in ((tutor, third), (theirs, their_queue)):  # end the slow work: a quick stop
        assert client.delete(f"/api/video-processing/status/{queue['queue_id']}").status_code == 200


def test_a_large_upload_is_never_held_in_memory(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    size = 48 * 1024 * 1024

    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="long.mp4"\r\n\r\n' + VIDEO_HEAD
        block = bytes(range(256)) * 256
        for _ in range(size // len(block)):
            yield block
        yield b"\r\n--b--\r\n"

    tracemalloc.start()
    try:
        response = tutor.request("POST", UPLOAD, content=body(),
                                 headers={"Content-Type": "multipart/form-data; boundary=b"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 202, response.text
    stored = Path(pipeline.settings.storage_dir) / upload_key("tutor-a", response.json()["attachment_id"])
    assert stored.stat().st_size == size + len(VIDEO_HEAD)
    assert peak < 12 * 1024 * 1024, f"peak Python memory {peak} bytes for a {size}-byte upload"
