"""The upload's ``language`` option and each tutor's default (``VIDPIPE_TUTOR_LANGUAGES``), on SQLite and Postgres."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from api.settings import Settings
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
