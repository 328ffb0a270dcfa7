"""A lecture in Spanish and one in English through all four real steps, on SQLite and Postgres.

The real servers of ``tests/test_end_to_end.py`` (the reference Whisper server
holds tiny.en and the multilingual Whisper base): the Spanish lecture, given
no language, is detected as Spanish and transcribed by the multilingual
model; the English one still by tiny.en; a language no model knows fails the
queue for good with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from handlers.storage import upload_key
from handlers.transcripts import word_error_rate
from local.lectures import LECTURES, lecture_video
from tests.test_end_to_end import RealPipeline, real_pipeline  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def lectures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lectures")


def submit(pipeline: RealPipeline, video: Path, **options: str) -> str:
    key = upload_key("tutor-1", video.stem, video.suffix)
    pipeline.storage.put_file(key, video)
    return str(pipeline.store.app.start_processing("tutor-1", video.stem, {"source": key, **options}))


def transcript_text(pipeline: RealPipeline, outputs: dict[str, str], fmt: str) -> str:
    return b"".join(pipeline.storage.iter_bytes(outputs[f"transcript_{fmt}"])).decode()


def test_spanish_is_detected_and_english_keeps_its_model(
    real_pipeline: Callable[..., RealPipeline], lectures: Path  # noqa: F811
) -> None:
    pipeline = real_pipeline()
    spanish = submit(pipeline, lecture_video(LECTURES["es"], lectures))
    english = submit(pipeline, lecture_video(LECTURES["en"], lectures))

    row = pipeline.wait(spanish, timeout=300)
    assert row["status"] == "completed", row["error"]
    out = pipeline.outputs(row, "transcribe")
    assert out["language"] == "es" and out["model"] == "base" and out["language_probability"] > 0.5
    step = next(s for s in row["steps"] if s["step"] == "transcribe")
    assert step["model"] == "base"
    assert word_error_rate(LECTURES["es"].text, transcript_text(pipeline, out, "txt")) < 0.6
    assert transcript_text(pipeline, out, "vtt").startswith("WEBVTT\nLanguage: es\n\n")
    assert '"language": "es", "language_probability": ' in transcript_text(pipeline, out, "json")

    row = pipeline.wait(english, timeout=300)
    assert row["status"] == "completed", row["error"]
    out = pipeline.outputs(row, "transcribe")
    assert out["language"] == "en" and out["model"] == "tiny.en"
    assert word_error_rate(LECTURES["en"].text, transcript_text(pipeline, out, "txt")) < 0.25


def test_a_language_hint_no_model_knows_fails_the_queue_with_the_reason(
    real_pipeline: Callable[..., RealPipeline], lectures: Path  # noqa: F811
) -> None:
    pipeline = real_pipeline()
    qid = submit(pipeline, lecture_video(LECTURES["es"], lectures), language="xx")
    row = pipeline.wait(qid, timeout=300)
    assert row["status"] == "failed" and row["retries"] == 0  # permanent: no retries
    assert "language 'xx' is not supported" in row["error"], row["error"]
