"""The reference Whisper server in other languages: detection, the model per language, refusals.

Lectures spoken by espeak-ng (:mod:`local.lectures`); the server holds the packaged
English-only tiny.en and the packaged multilingual Whisper base.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.local.test_model_servers import served, wait_for_state

from handlers.transcripts import word_error_rate
from local.lectures import LECTURES, speak
from local.models import transcription
from local.models.settings import ModelServerSettings, TranscriptionSettings


def server(**fields: object) -> Iterator[httpx.Client]:
    settings = TranscriptionSettings(cpu_threads=2, server=ModelServerSettings(), **fields)  # type: ignore[arg-type]
    with served(transcription.create_app(settings)) as client:
        wait_for_state(client, {"ready"})
        yield client


@pytest.fixture(scope="module")
def whisper() -> Iterator[httpx.Client]:
    yield from server()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("lectures")
    return {code: speak(LECTURES[code], folder / f"{code}.wav").read_bytes() for code in ("en", "es", "de")}


def transcribe(client: httpx.Client, audio: bytes, **form: str) -> httpx.Response:
    return client.post("/v1/audio/transcriptions", files={"file": ("lecture.wav", audio)},
                       data={"response_format": "verbose_json", **form}, timeout=300)


def test_spanish_without_a_hint_is_detected_and_transcribed_by_the_multilingual_model(
    whisper: httpx.Client, speech: dict[str, bytes]
) -> None:
    response = transcribe(whisper, speech["es"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["language"] == "es" and body["model"] == "base" and body["language_probability"] > 0.5
    assert response.headers["content-language"] == "es" and response.headers["x-whisper-model"] == "base"
    assert word_error_rate(LECTURES["es"].text, body["text"]) < 0.6, body["text"]
    assert "fotosíntesis" in body["text"].lower()


def test_english_still_goes_to_the_english_model(whisper: httpx.Client, speech: dict[str, bytes]) -> None:
    body = transcribe(whisper, speech["en"]).json()
    assert body["language"] == "en" and body["model"] == "tiny.en" and body["language_probability"] > 0.5
    assert word_error_rate(LECTURES["en"].text, body["text"]) < 0.25, body["text"]


def test_a_named_language_skips_detection_and_every_format_says_it(
    whisper: httpx.Client, speech: dict[str, bytes]
) -> None:
    body = transcribe(whisper, speech["de"], language="de").json()
    assert body["language"] == "de" and body["model"] == "base" and body["language_probability"] == 1.0
    srt = transcribe(whisper, speech["de"], language="de", response_format="srt")
    assert srt.status_code == 200 and srt.headers["content-language"] == "de"
    assert srt.headers["x-language-probability"] == "1.0000" and "-->" in srt.text


def test_the_english_model_asked_for_spanish_is_refused_with_the_reason(
    whisper: httpx.Client, speech: dict[str, bytes]
) -> None:
    response = transcribe(whisper, speech["es"], model="tiny.en", language="es")
    assert response.status_code == 422
    assert "tiny.en transcribes only English, not Spanish" in response.json()["error"]
    assert transcribe(whisper, speech["es"], model="base").json()["language"] == "es"


def test_no_speech_is_not_refused(whisper: httpx.Client) -> None:
    from tests.local.test_model_servers import tone_wav

    response = transcribe(whisper, tone_wav(1.0))
    assert response.status_code == 200 and response.json()["language_probability"] is None


def test_an_unsure_detection_is_refused_rather_than_guessed(speech: dict[str, bytes]) -> None:
    for client in server(detect_min_probability=0.9999):
        response = transcribe(client, speech["es"])
        assert response.status_code == 422
        error = response.json()["error"]
        assert "could not be identified with confidence" in error and "Spanish" in error
        assert "language option" in error
        assert transcribe(client, speech["es"], language="es").status_code == 200  # the hint is the way out


def test_an_unsure_english_first_guess_is_transcribed_in_english_unless_switched_off(
    speech: dict[str, bytes]
) -> None:
    for client in server(detect_min_probability=0.9999):
        body = transcribe(client, speech["en"]).json()
        assert body["language"] == "en" and body["model"] == "tiny.en" and body["language_probability"] < 0.9999
    for client in server(detect_min_probability=0.9999, detect_default_language=""):
        response = transcribe(client, speech["en"])
        assert response.status_code == 422 and "English" in response.json()["error"]


def test_a_language_outside_the_allowed_list_is_refused(speech: dict[str, bytes]) -> None:
    for client in server(languages="en,es"):
        response = transcribe(client, speech["de"])
        assert response.status_code == 422
        assert "sounds like German" in response.json()["error"] and "WHISPER_LANGUAGES" in response.json()["error"]
        assert transcribe(client, speech["de"], language="de").status_code == 422  # not served here
        assert transcribe(client, speech["es"]).json()["language"] == "es"


def test_english_only_servers_keep_their_old_behaviour(speech: dict[str, bytes]) -> None:
    for client in server(multilingual=False):
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["tiny.en"]
        assert transcribe(client, speech["en"]).json()["model"] == "tiny.en"
        assert transcribe(client, speech["es"], language="es").status_code == 422


def test_packaged_multilingual_model_files(tmp_path: Path) -> None:
    from local.models.whisper import packaged_multilingual_files

    files = packaged_multilingual_files()
    assert set(files) == {"model.bin", "config.json", "vocabulary.json", "tokenizer.json"}
    assert len(files["model.bin"]) == 94_371_840 + 50_845_767  # the two parts, joined in order
