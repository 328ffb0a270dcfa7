"""Lectures with known words and times, processed for search without Whisper or ffmpeg.

The compress and transcribe steps are scripted (the upload is stored as the
"compressed" video; the transcript is the lecture's script, written in every
format by the project's own :func:`store_transcript`); the embed step is the
real :class:`Embedder` on a real embedding server, so moments are chunked,
embedded and stored exactly as in production.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from handlers.embedding_store import EmbeddingStore
from handlers.providers.embeddings import EmbeddingClient, Embedder
from handlers.providers.transcription import store_transcript
from handlers.steps import StepContext, StepJob, StepResult
from handlers.storage import artifact_key
from handlers.storage.local import LocalStorage
from handlers.transcripts import Segment, Transcript
from projections.database import DatabaseUrl
from projections.views import open_view

Script = Sequence[tuple[float, float, str]]

LECTURES: dict[str, Script] = {
    "photosynthesis.mp4": [
        (0.0, 9.0, "Welcome back. Today we look at how green plants feed themselves."),
        (9.0, 21.0, "Inside the leaves, chlorophyll absorbs sunlight and turns its energy into sugar."),
        (21.0, 33.0, "The plant takes carbon dioxide from the air and water from the soil."),
        (33.0, 46.0, "Oxygen is released as a by-product, which is the air we breathe."),
        (46.0, 60.0, "At night the plant burns some of that sugar to keep its cells alive."),
    ],
    "french-revolution.mp4": [
        (0.0, 11.0, "In the summer of 1789 France was bankrupt and bread was expensive."),
        (11.0, 24.0, "On the fourteenth of July a crowd in Paris stormed the Bastille prison."),
        (24.0, 37.0, "The king, Louis the Sixteenth, tried to flee the country but was caught at Varennes."),
        (37.0, 52.0, "The monarchy was abolished and a republic was declared in September 1792."),
    ],
}
"""Two short lectures; the file name picks the script."""


class ScriptedCompressor:
    """Stores the upload itself as the lecture's compressed video."""

    name = "scripted-compress"

    def __init__(self, storage: LocalStorage) -> None:
        self.storage = storage

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        key = artifact_key(job.owner_id, job.queue_id, "compressed")
        self.storage.put_stream(key, self.storage.iter_bytes(str(job.options["source"])))
        return StepResult(outputs={"video": key}, provider=self.name)


class ScriptedTranscriber:
    """The transcript of the lecture named by the upload's file name, stored in every format."""

    name = "scripted-transcribe"

    def __init__(self, storage: LocalStorage, scripts: Mapping[str, Script] = LECTURES) -> None:
        self.storage = storage
        self.scripts = scripts

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        script = self.scripts[str(job.options["filename"])]
        transcript = Transcript(tuple(Segment(*s) for s in script), "en", script[-1][1], "scripted")
        return StepResult(outputs=store_transcript(self.storage, job, transcript), provider=self.name)


def search_providers(database_url: str, storage_dir: Path, embedding_url: str, *, max_chars: int = 160) -> dict:
    """Providers for ``served``: scripted compress/transcribe, the real embed step on ``embedding_url``."""
    storage = LocalStorage(storage_dir)
    view = open_view(DatabaseUrl.parse(database_url).event_store_env())
    client = EmbeddingClient(embedding_url, label="bge", name="BGE embedding server")
    return {
        "compress": ScriptedCompressor(storage),
        "transcribe": ScriptedTranscriber(storage),
        "embed": Embedder(client, storage, EmbeddingStore(view), max_chars=max_chars),
    }
