"""A transcribe step held mid-way, for the transcript that grows while it runs (API and page tests).

:class:`HeldWhisper` is a fake OpenAI-compatible Whisper server that streams
``transcript.text.segment`` events for two 10 s pieces and stops at two gates:
before piece 1's first segment and after piece 2's first one. The real
:class:`~handlers.providers.transcription.WhisperTranscriber` runs against it
(writing the transcript so far at every segment), after :class:`AudioStandIn`
(an audio-convert step that stores a placeholder audio file).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from handlers.media import AudioPiece
from handlers.providers.transcription import WhisperClient, WhisperTranscriber
from handlers.steps import StepContext, StepJob, StepResult
from handlers.storage import Storage, artifact_key
from handlers.storage.local import LocalStorage
from tests.handlers.model_fakes import FakeServer, Seen

PIECES = {
    1: [(0.0, 3.0, "Photosynthesis turns light into sugar."), (3.0, 6.0, "Leaves hold the chlorophyll."),
        (6.0, 10.0, "Stomata let the carbon dioxide in.")],
    2: [(0.0, 4.0, "At night the plant burns some sugar."), (4.0, 10.0, "That is respiration.")],
}
"""What each piece says (times within the piece; piece 2 starts at 10 s)."""


@dataclass
class Gate:
    """Where the stream waits: ``reached`` is set when it gets there, it goes on once ``opened``."""

    reached: threading.Event = field(default_factory=threading.Event)
    opened: threading.Event = field(default_factory=threading.Event)

    async def pass_through(self) -> None:
        self.reached.set()
        while not self.opened.is_set():
            await asyncio.sleep(0.02)


@dataclass
class HeldWhisper:
    """The fake server's script: ``before_first`` holds piece 1, ``mid_lecture`` holds piece 2 after a segment."""

    before_first: Gate = field(default_factory=Gate)
    mid_lecture: Gate = field(default_factory=Gate)

    def open_all(self) -> None:
        self.before_first.opened.set()
        self.mid_lecture.opened.set()

    def answer(self, request: Request, seen: Seen) -> Response:
        if seen.path == "/v1/models":
            return Response('{"object": "list", "data": [{"id": "tiny.en"}]}', media_type="application/json")
        number = 1 if seen.filename == "piece-1.wav" else 2
        script = PIECES[number]

        async def body() -> AsyncIterator[str]:
            for index, (start, end, text) in enumerate(script):
                if number == 1 and index == 0:
                    await self.before_first.pass_through()
                if number == 2 and index == 1:
                    await self.mid_lecture.pass_through()
                yield event({"type": "transcript.text.delta", "delta": " " + text, "segment_id": f"seg_{index}"})
                yield event({"type": "transcript.text.segment", "id": f"seg_{index}", "start": start, "end": end,
                             "text": " " + text})
                await asyncio.sleep(0.01)
            segments = [{"id": i, "start": s, "end": e, "text": " " + t} for i, (s, e, t) in enumerate(script)]
            yield event({"type": "transcript.text.done", "task": "transcribe", "language": "en", "duration": 10.0,
                         "model": "tiny.en", "segments": segments, "text": " ".join(t for _, _, t in script)})

        return StreamingResponse(body(), media_type="text/event-stream")


def event(payload: dict[str, object]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def two_pieces(audio: Path, workdir: Path) -> list[AudioPiece]:
    """Two 10 s placeholder pieces (the fake server does not listen)."""
    pieces = []
    for number in (1, 2):
        target = workdir / f"piece-{number}.wav"
        target.write_bytes(b"RIFF placeholder " + bytes([number]))
        pieces.append(AudioPiece(target, 10.0 * (number - 1), 10.0 * number))
    return pieces


@dataclass
class AudioStandIn:
    """The audio-convert step: stores a placeholder audio file where the transcribe step looks for it."""

    storage: Storage
    name: str = "audio-stand-in"

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        key = artifact_key(job.owner_id, job.queue_id, "audio")
        self.storage.put_stream(key, [b"OggS placeholder audio"])
        return StepResult(outputs={"audio": key}, provider=self.name)


@contextmanager
def held_transcription(storage_dir: Path, work_dir: Path) -> Iterator[tuple[HeldWhisper, dict[str, object]]]:
    """The fake server running and the providers (audio-convert, transcribe) that use it; all gates open at exit."""
    script = HeldWhisper()
    server = FakeServer(script.answer)
    client = WhisperClient(server.url)
    storage = LocalStorage(storage_dir)
    providers: dict[str, object] = {
        "audio-convert": AudioStandIn(storage),
        "transcribe": WhisperTranscriber(client, storage, two_pieces, work_dir, partial_every_seconds=0.0),
    }
    try:
        yield script, providers
    finally:
        script.open_all()
        client.close()
        server.stop()
