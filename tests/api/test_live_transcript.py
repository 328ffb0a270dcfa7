"""The transcript so far (``GET .../transcript?partial=true``) while the transcribe step runs, over real HTTP.

The real transcribe step streams from a fake Whisper server held mid-lecture
(:mod:`tests.api.live_transcript_support`); SQLite and Postgres.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from handlers.partial_transcripts import partial_key
from handlers.storage.local import LocalStorage
from tests.api.conftest import Client
from tests.api.live_transcript_support import PIECES, held_transcription
from tests.handlers.conftest import Pipeline
from tests.support import wait_until

PREFIX = "/api/video-processing"
TEXTS = [text for number in (1, 2) for _, _, text in PIECES[number]]

pytestmark = pytest.mark.timeout(120)


def so_far(tutor: Client, qid: str, fmt: str = "json") -> Any:
    return tutor.get(f"{PREFIX}/status/{qid}/transcript", params={"format": fmt, "partial": "true"})


def test_the_transcript_grows_while_the_step_runs_then_is_the_final_one(
    served: Callable[..., Pipeline], clients: Callable[..., Client], tmp_path: Path
) -> None:
    storage_dir = tmp_path / "storage"
    with held_transcription(storage_dir, tmp_path / "whisper-work") as (script, providers):
        pipeline = served(providers)
        tutor, other = clients(pipeline, "tutor-a"), clients(pipeline, "tutor-b")
        qid = tutor.upload().json()["queue_id"]

        assert script.before_first.reached.wait(30)  # the step runs; the server has said nothing yet
        tutor.wait_for(qid, ("processing",))
        wait_until(lambda: next(s for s in tutor.status(qid)["steps"] if s["step"] == "transcribe")["status"]
                   == "running", 10, "the transcribe step to show as running")
        empty = so_far(tutor, qid)
        assert empty.status_code == 200, empty.text
        assert empty.json()["complete"] is False and empty.json()["segments"] == []
        assert empty.headers["x-transcript-complete"] == "false"
        assert empty.headers["cache-control"] == "no-store"

        script.before_first.opened.set()
        assert script.mid_lecture.reached.wait(30)  # piece 1 and piece 2's first segment heard
        body = wait_until(lambda: len((b := so_far(tutor, qid).json())["segments"]) == 4 and b, 10,
                          "four segments so far")
        assert body["complete"] is False
        assert [s["text"] for s in body["segments"]] == TEXTS[:4]
        assert [(s["start"], s["end"]) for s in body["segments"]][3] == (10.0, 14.0)  # piece 2 starts at 10 s
        vtt = so_far(tutor, qid, "vtt")
        assert vtt.status_code == 200 and vtt.headers["x-transcript-complete"] == "false"
        assert vtt.headers["content-type"].startswith("text/vtt")
        assert "00:00:10.000 --> 00:00:14.000\nAt night the plant burns some sugar." in vtt.text
        for fmt in ("json", "srt", "vtt", "txt"):  # the language heard with the first piece, in every format
            assert so_far(tutor, qid, fmt).headers.get("content-language") == "en", fmt

        whole = tutor.get(f"{PREFIX}/status/{qid}/transcript", params={"format": "json"})
        assert whole.status_code == 404 and "does not exist yet" in whole.json()["error"]  # as before
        for response in (so_far(other, qid), so_far(other, qid, "txt")):  # owner-only
            assert response.status_code == 404 and "does not exist" in response.json()["error"]
        assert not any(t in response.text for t in TEXTS)

        script.mid_lecture.opened.set()
        tutor.wait_for(qid)
    final = so_far(tutor, qid)
    assert final.status_code == 200 and final.json()["complete"] is True
    assert final.headers["x-transcript-complete"] == "true"
    assert [s["text"] for s in final.json()["segments"]] == TEXTS
    assert final.json()["language"] == "en" and final.headers["content-language"] == "en"
    plain = tutor.get(f"{PREFIX}/status/{qid}/transcript", params={"format": "txt"})
    assert plain.status_code == 200 and plain.text == "".join(t + "\n" for t in TEXTS)
    assert so_far(tutor, qid, "txt").text == plain.text
    for fmt in ("json", "srt", "vtt", "txt"):  # SRT and TXT have no field for it: the header says it
        assert tutor.get(f"{PREFIX}/status/{qid}/transcript", params={"format": fmt}).headers["content-language"] == "en"
        assert so_far(tutor, qid, fmt).headers["content-language"] == "en"
    assert not LocalStorage(storage_dir).exists(partial_key("tutor-a", qid))  # replaced by the final one


def test_nothing_so_far_once_the_queue_was_cancelled_before_a_word(
    served: Callable[..., Pipeline], clients: Callable[..., Client], tmp_path: Path
) -> None:
    with held_transcription(tmp_path / "storage", tmp_path / "whisper-work") as (script, providers):
        pipeline = served(providers)
        tutor = clients(pipeline, "tutor-a")
        qid = tutor.upload().json()["queue_id"]
        assert script.before_first.reached.wait(30)
        assert tutor.delete(f"{PREFIX}/status/{qid}").status_code == 200  # cancelled before a word was heard
        script.open_all()
        assert tutor.wait_for(qid)["status"] == "cancelled"
    response = so_far(tutor, qid)
    assert response.status_code == 404
    assert "does not exist yet" in response.json()["error"]
    assert so_far(tutor, "no-such-queue").status_code == 404


def test_deleting_the_lecture_mid_transcription_removes_the_transcript_so_far(
    served: Callable[..., Pipeline], clients: Callable[..., Client], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="handlers.step_runner")
    storage, work = LocalStorage(tmp_path / "storage"), tmp_path / "whisper-work"
    with held_transcription(tmp_path / "storage", work) as (script, providers):
        pipeline = served(providers)
        tutor = clients(pipeline, "tutor-a")
        qid = tutor.upload().json()["queue_id"]
        script.before_first.opened.set()
        assert script.mid_lecture.reached.wait(30)
        wait_until(lambda: storage.exists(partial_key("tutor-a", qid)), 10, "the transcript so far to be stored")
        assert tutor.delete(f"/api/lectures/{qid}").status_code == 204
        assert not storage.path(f"tutor-a/{qid}").exists()  # the folder went, the words with it
        wait_until(lambda: any("while transcribe ran; stopping it" in r.getMessage() for r in caplog.records), 10,
                   "the running step to be told of the cancel")
        script.mid_lecture.opened.set()  # the step hears the rest, then ends without storing anything
        wait_until(lambda: not (work / qid).exists(), 30, "the cancelled step to end")
    assert not storage.path(f"tutor-a/{qid}").exists()  # it wrote nothing after the purge
    assert so_far(tutor, qid).status_code == 404
