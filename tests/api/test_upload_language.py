"""The upload's ``language`` option and each tutor's default (``VIDPIPE_TUTOR_LANGUAGES``), on SQLite and Postgres."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.settings import Settings
from handlers.providers.transcription import store_transcript
from handlers.steps import StepContext, StepJob, StepResult
from handlers.storage.local import LocalStorage
from handlers.transcripts import Segment, Transcript
from tests.api.conftest import Client, fake_video
from tests.handlers.conftest import Pipeline

Served = Callable[..., Pipeline]
Clients = Callable[..., Client]
UPLOAD = "/api/video-processing/upload"


def language_of(pipeline: Pipeline, queue_id: str) -> object:
    return dict(pipeline.events(queue_id)[0].options).get("language")


def test_the_language_option_and_the_tutors_default_reach_the_queue(served: Served, clients: Clients) -> None:
    pipeline = served(VIDPIPE_TUTOR_LANGUAGES={"tutor-es": "es"})  # from the environment: the same, as JSON
    spanish_tutor, other = clients(pipeline, "tutor-es"), clients(pipeline, "tutor-b")

    assert language_of(pipeline, spanish_tutor.upload().json()["queue_id"]) == "es"  # the tutor's default
    french = spanish_tutor.upload(fake_video(1001), params={"language": "FR"}).json()["queue_id"]
    assert language_of(pipeline, french) == "fr"  # the request's wins
    detected = spanish_tutor.upload(fake_video(1002), params={"language": "auto"}).json()["queue_id"]
    assert language_of(pipeline, detected) is None  # auto: detected by the Whisper server
    assert language_of(pipeline, other.upload().json()["queue_id"]) is None  # no default: detected

    attachment = other.upload(fake_video(1003)).json()["attachment_id"]
    again = other.request("POST", UPLOAD, json={"attachment_id": attachment}, params={"language": "de"})
    assert again.status_code == 202 and language_of(pipeline, again.json()["queue_id"]) == "de"


def test_the_same_recording_with_another_language_gets_its_own_queue(served: Served, clients: Clients) -> None:
    """An upload of the same bytes reuses the tutor's earlier queue only when it asks for the same
    options; another language (or compression left out) is another result, so another queue."""
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    video = fake_video(2001)
    first = tutor.upload(video, params={"language": "en"}).json()
    same = tutor.upload(video, params={"language": "EN"}).json()
    assert same["queue_id"] == first["queue_id"] and same["reused"] is True
    spanish = tutor.upload(video, params={"language": "es"}).json()
    assert spanish["queue_id"] != first["queue_id"] and spanish["reused"] is False
    assert language_of(pipeline, spanish["queue_id"]) == "es" and language_of(pipeline, first["queue_id"]) == "en"
    assert tutor.upload(video, params={"language": "es"}).json()["queue_id"] == spanish["queue_id"]
    small = tutor.upload(video, params={"language": "es", "skip_compress": "true"}).json()
    assert small["queue_id"] not in (first["queue_id"], spanish["queue_id"]) and small["reused"] is False


def test_a_malformed_language_is_refused_before_anything_is_stored(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    response = tutor.upload(params={"language": "spanish!"})
    assert response.status_code == 422 and "language" in response.json()["error"]
    assert tutor.upload().status_code == 202


def test_tutor_languages_are_read_as_json_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDPIPE_TUTOR_LANGUAGES", '{"tutor-es": "es", "tutor-pt": "pt"}')
    assert Settings().tutor_languages == {"tutor-es": "es", "tutor-pt": "pt"}
    monkeypatch.setenv("VIDPIPE_TUTOR_LANGUAGES", '{"tutor-es": "Spanish"}')
    with pytest.raises(ValidationError, match="VIDPIPE_TUTOR_LANGUAGES"):
        Settings()


@dataclass
class SpanishTranscriber:
    """The transcribe step's storing half (``store_transcript``) on a Spanish transcript the server detected."""

    storage: LocalStorage
    name: str = "test-transcriber"

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        transcript = Transcript((Segment(0.0, 2.0, "Hola a todos."),), "es", 2.0, "base", 0.98)
        return StepResult(outputs=store_transcript(self.storage, job, transcript), provider=self.name,
                          model=transcript.model)


def test_the_transcripts_language_is_on_the_step_and_every_download(
    served: Served, clients: Clients, tmp_path: Path
) -> None:
    pipeline = served({"transcribe": SpanishTranscriber(LocalStorage(tmp_path / "storage"))})
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload().json()["queue_id"]
    row = tutor.wait_for(qid)
    outputs = next(s for s in row["steps"] if s["step"] == "transcribe")["outputs"]
    assert (outputs["language"], outputs["language_probability"], outputs["model"]) == ("es", 0.98, "base")
    for fmt in ("json", "srt", "vtt", "txt"):
        response = tutor.get(f"/api/video-processing/status/{qid}/transcript", params={"format": fmt})
        assert response.status_code == 200 and response.headers["content-language"] == "es"
    txt = tutor.get(f"/api/video-processing/status/{qid}/transcript", params={"format": "txt"})
    assert txt.text == "Hola a todos.\n"  # the text stays plain
