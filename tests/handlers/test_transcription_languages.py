"""The transcribe step and languages: the queue's hint is sent, a detected language is named for later pieces,
the detection's probability and the model reach the step's outputs, a refusal fails the step for good."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from handlers.errors import PermanentError
from handlers.providers.transcription import WhisperClient, WhisperTranscriber, language_hint
from handlers.storage.local import LocalStorage
from handlers.transcripts import parse_json
from tests.handlers.model_fakes import Seen, error, fake_server
from tests.handlers.test_transcription_client import Progress, fixed_splitter, job

PIECES = [0.0, 10.0, 20.0, 30.0]


def spanish(seen: Seen) -> JSONResponse:
    """What the reference server answers: detection's probability without a language, 1.0 with one."""
    given = seen.form.get("language")
    return JSONResponse({
        "task": "transcribe", "language": "es", "language_probability": 1.0 if given else 0.93,
        "model": "base", "duration": 10.0, "segments": [{"start": 0.0, "end": 4.0, "text": "Hola a todos."}],
        "text": "Hola a todos.",
    })


def test_detected_on_the_first_piece_then_named_for_the_rest(
    storage: LocalStorage, placeholder_audio: Path, tmp_path: Path
) -> None:
    with fake_server(lambda request, seen: spanish(seen)) as server, WhisperClient(server.url) as client:
        step = WhisperTranscriber(client, storage, fixed_splitter(PIECES), tmp_path / "cache")
        result = step.run(job(storage, placeholder_audio), Progress().context)
    sent = [s.form.get("language") for s in server.seen if s.path == "/v1/audio/transcriptions"]
    assert sent == [None, "es", "es"]
    assert (result.outputs["language"], result.outputs["language_probability"]) == ("es", 0.93)
    assert result.outputs["model"] == result.model == "base"
    transcript = parse_json(storage.path(result.outputs["transcript_json"]).read_bytes())
    assert transcript.language == "es" and transcript.language_probability == 0.93
    assert storage.path(result.outputs["transcript_vtt"]).read_text().startswith("WEBVTT\nLanguage: es\n\n")


def test_the_queues_language_option_is_sent_with_every_piece(
    storage: LocalStorage, placeholder_audio: Path, tmp_path: Path
) -> None:
    with fake_server(lambda request, seen: spanish(seen)) as server, WhisperClient(server.url) as client:
        step = WhisperTranscriber(client, storage, fixed_splitter(PIECES), tmp_path / "cache")
        hinted = replace(job(storage, placeholder_audio), options={"language": "ES"})
        result = step.run(hinted, Progress().context)
    assert [s.form.get("language") for s in server.seen if s.path == "/v1/audio/transcriptions"] == ["es"] * 3
    assert result.outputs["language_probability"] == 1.0


def test_a_refused_language_fails_the_step_for_good_with_the_servers_reason(
    storage: LocalStorage, placeholder_audio: Path, tmp_path: Path
) -> None:
    reason = ("The language of the speech could not be identified with confidence (best guesses: French 44%). "
              "Give the lecture's language as the language option (for example language=es).")

    def refuse(request: Request, seen: Seen) -> Response:
        return error(422, reason)

    with fake_server(refuse) as server, WhisperClient(server.url) as client:
        step = WhisperTranscriber(client, storage, fixed_splitter(PIECES), tmp_path / "cache")
        with pytest.raises(PermanentError) as caught:
            step.run(job(storage, placeholder_audio), Progress().context)
    assert "could not be identified with confidence" in str(caught.value) and "language option" in str(caught.value)
    assert not (tmp_path / "cache" / "queue-1").exists()


@pytest.mark.parametrize(("options", "expected"), [
    ({}, None), ({"language": "auto"}, None), ({"language": ""}, None), ({"language": " PT "}, "pt"),
])
def test_language_hint(options: dict[str, str], expected: str | None) -> None:
    assert language_hint(options) == expected
