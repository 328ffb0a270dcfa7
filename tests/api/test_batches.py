"""``POST /api/batches`` and ``GET /api/batches/{id}`` over real HTTP, on SQLite and Postgres."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from api.routes.batches import MAX_BATCH_FILES
from tests.api.conftest import Client, fake_video
from tests.handlers.conftest import Pipeline
from tests.support import wait_until

Served = Callable[..., Pipeline]
Clients = Callable[..., Client]
BATCHES = "/api/batches"


def send_batch(client: Client, files: list[tuple[str, bytes, str]]) -> object:
    return client.request("POST", BATCHES, files=[("file", f) for f in files])


def test_several_videos_start_several_queues_with_one_batch_id(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    videos = [fake_video(150_000, seed=n) for n in range(3)]
    response = send_batch(tutor, [(f"week {n}.mp4", v, "video/mp4") for n, v in enumerate(videos)])
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["refused"]) == (3, 0)
    assert [f["filename"] for f in body["files"]] == ["week 0.mp4", "week 1.mp4", "week 2.mp4"]
    queue_ids = [f["queue_id"] for f in body["files"]]
    assert len(set(queue_ids)) == 3 and all(queue_ids)
    for position, (queue_id, video) in enumerate(zip(queue_ids, videos, strict=True)):
        options = dict(pipeline.events(queue_id)[0].options)
        assert options["batch_id"] == body["batch_id"] and options["batch_position"] == position
        assert (Path(pipeline.settings.storage_dir) / options["source"]).read_bytes() == video

    status = tutor.get(f"{BATCHES}/{body['batch_id']}")  # at once: the projection may lag, the answer does not
    assert status.status_code == 200, status.text
    assert [f["queue_id"] for f in status.json()["files"]] == queue_ids

    done = wait_until(lambda: (s := tutor.get(f"{BATCHES}/{body['batch_id']}").json())["done"] and s, 30, "batch")
    assert done["counts"] == {"completed": 3}
    assert [f["status"]["status"] for f in done["files"]] == ["completed"] * 3
    assert [f["status"]["filename"] for f in done["files"]] == ["week 0.mp4", "week 1.mp4", "week 2.mp4"]


def test_a_broken_file_is_refused_alone_and_the_others_are_processed(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    response = send_batch(tutor, [
        ("good-1.mp4", fake_video(120_000, seed=1), "video/mp4"),
        ("slides.mp4", b"%PDF-1.7 not a video at all" * 100, "video/mp4"),  # a video by name, not by bytes
        ("notes.txt", b"just text", "text/plain"),
        ("empty.mp4", b"", "video/mp4"),
        ("good-2.mp4", fake_video(120_000, seed=2), "video/mp4"),
    ])
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["refused"]) == (2, 3)
    files = body["files"]
    assert [bool(f["queue_id"]) for f in files] == [True, False, False, False, True]
    assert "does not look like a video" in files[1]["error"]
    assert "upload a video" in files[2]["error"]
    assert "is empty" in files[3]["error"]
    stored = sorted(p.name for p in (Path(pipeline.settings.storage_dir) / "tutor-a" / "uploads").iterdir())
    assert len(stored) == 2, "nothing of a refused file is stored"
    for item in (files[0], files[4]):
        assert tutor.wait_for(item["queue_id"])["status"] == "completed"
    batch = tutor.get(f"{BATCHES}/{body['batch_id']}").json()
    assert [f["error"] is None for f in batch["files"]] == [True, False, False, False, True]
    assert batch["done"] is True and batch["counts"] == {"completed": 2}


def test_a_batch_of_only_broken_files_is_refused_naming_each(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    response = send_batch(tutor, [("a.txt", b"text", "text/plain"), ("b.mp4", b"GIF89a....", "video/mp4")])
    assert response.status_code == 415, response.text
    assert "a.txt" in response.json()["error"] and "b.mp4" in response.json()["error"]
    assert not (Path(pipeline.settings.storage_dir) / "tutor-a" / "uploads").exists() or not list(
        (Path(pipeline.settings.storage_dir) / "tutor-a" / "uploads").iterdir())
    assert tutor.request("POST", BATCHES, files=[("other", ("x.mp4", fake_video(), "video/mp4"))]).status_code == 422
    assert tutor.request("POST", BATCHES, json={"files": []}).status_code == 415


def test_a_batch_is_its_owners_only(served: Served, clients: Clients) -> None:
    pipeline = served()
    owner, other = clients(pipeline, "tutor-a"), clients(pipeline, "tutor-b")
    body = send_batch(owner, [("a.mp4", fake_video(seed=3), "video/mp4")]).json()
    refused = other.get(f"{BATCHES}/{body['batch_id']}")
    assert refused.status_code == 404 and "does not exist" in refused.json()["error"]
    assert other.get(f"{BATCHES}/no-such-batch").status_code == 404
    assert owner.get(f"{BATCHES}/{body['batch_id']}").status_code == 200


def test_a_file_over_the_size_limit_is_refused_alone(served: Served, clients: Clients) -> None:
    pipeline = served(VIDPIPE_MAX_UPLOAD_BYTES=100_000)
    tutor = clients(pipeline, "tutor-a")
    response = send_batch(tutor, [("big.mp4", fake_video(150_000, seed=4), "video/mp4"),
                                  ("small.mp4", fake_video(50_000, seed=5), "video/mp4")])
    assert response.status_code == 202, response.text
    big, small = response.json()["files"]
    assert big["queue_id"] is None and "larger than the limit" in big["error"]
    assert tutor.wait_for(small["queue_id"])["status"] == "completed"
    only_big = send_batch(tutor, [("big.mp4", fake_video(150_000, seed=6), "video/mp4")])
    assert only_big.status_code == 413 and "big.mp4" in only_big.json()["error"]
    uploads = Path(pipeline.settings.storage_dir) / "tutor-a" / "uploads"
    assert [p.stat().st_size for p in uploads.iterdir()] == [50_000]


def test_files_beyond_the_most_a_batch_takes_are_refused_each(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    files = [(f"{n}.mp4", fake_video(2_000, seed=n), "video/mp4") for n in range(MAX_BATCH_FILES + 2)]
    response = send_batch(tutor, files)
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["refused"]) == (MAX_BATCH_FILES, 2)
    assert all(f"at most {MAX_BATCH_FILES}" in f["error"] for f in body["files"][MAX_BATCH_FILES:])
    uploads = Path(pipeline.settings.storage_dir) / "tutor-a" / "uploads"
    assert len(list(uploads.iterdir())) == MAX_BATCH_FILES


def test_the_callers_batches_are_listed_newest_first(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor, other = clients(pipeline, "tutor-a"), clients(pipeline, "tutor-b")
    older = send_batch(tutor, [("a.mp4", fake_video(seed=21), "video/mp4"), ("b.txt", b"x", "text/plain")]).json()
    newer = send_batch(tutor, [("c.mp4", fake_video(seed=22), "video/mp4"), ("d.mp4", fake_video(seed=23), "video/mp4")]).json()
    for item in older["files"][:1] + newer["files"]:
        tutor.wait_for(item["queue_id"])

    page = tutor.get(BATCHES).json()
    assert [b["batch_id"] for b in page["items"]] == [newer["batch_id"], older["batch_id"]]
    assert [(b["files"], b["accepted"], b["counts"]) for b in page["items"]] == [
        (2, 2, {"completed": 2}), (2, 1, {"completed": 1})]
    first = tutor.get(BATCHES, params={"limit": 1}).json()
    assert [b["batch_id"] for b in first["items"]] == [newer["batch_id"]] and first["has_more"] is True
    assert other.get(BATCHES).json()["items"] == []


def test_a_body_that_breaks_off_keeps_the_files_received_whole_in_the_batch(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    boundary = "vidpipe-test-boundary"
    whole = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"whole.mp4\"\r\n"
             "Content-Type: video/mp4\r\n\r\n").encode() + fake_video(1_000_000, seed=31) + b"\r\n"
    broken = f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.mp4\"\r\n".encode()
    note = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n").encode() + b"n" * 300_000 + b"\r\n"
    body = whole + note + broken + b"\x00garbage that is not a header\r\n--not-the-boundary--"
    response = tutor.request("POST", BATCHES, content=body,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 400, response.text
    batches = tutor.get(BATCHES).json()["items"]
    assert [(b["files"], b["accepted"]) for b in batches] == [(1, 1)]
    files = tutor.get(f"{BATCHES}/{batches[0]['batch_id']}").json()["files"]
    assert [f["filename"] for f in files] == ["whole.mp4"]
    assert tutor.wait_for(files[0]["queue_id"])["status"] == "completed"
