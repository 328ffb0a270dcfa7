"""The transcript so far: the throttled writer, and the transcribe step keeping it while a fake server streams."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from handlers.errors import PermanentError, TransientError
from handlers.partial_transcripts import PartialTranscriptWriter, partial_key, read_partial
from handlers.providers.transcription import WhisperClient, WhisperTranscriber
from handlers.storage.local import LocalStorage
from handlers.transcripts import Segment, Transcript, parse_json
from tests.handlers.model_fakes import Seen, error, fake_server
from tests.handlers.test_transcription_client import OWNER, QUEUE, Progress, fixed_splitter, job, segment_events
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)


def transcript(count: int) -> Transcript:
    return Transcript(tuple(Segment(float(i), i + 1.0, f"segment {i}") for i in range(count)), "en")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class BrokenStorage(LocalStorage):
    def put_stream(self, key: str, chunks: Any) -> Any:
        raise OSError("MEGA is unreachable")


def test_the_writer_writes_at_most_once_per_interval_and_only_news(storage: LocalStorage) -> None:
    clock = Clock()
    key = partial_key(OWNER, QUEUE)
    writer = PartialTranscriptWriter(storage, key, every_seconds=5.0, clock=clock)
    assert writer.offer(lambda: transcript(0)) is False  # nothing heard yet: nothing written
    assert writer.offer(lambda: transcript(1)) is True  # the first segments at once
    clock.now += 1
    assert writer.offer(lambda: transcript(2)) is False  # too soon
    clock.now += 4
    assert writer.offer(lambda: transcript(3)) is True
    clock.now += 6
    assert writer.offer(lambda: transcript(3)) is False  # no new segment
    assert writer.offer(lambda: transcript(4), force=True) is True  # a piece ended
    assert writer.writes == 3
    stored = json.loads(storage.path(key).read_text())
    assert stored["complete"] is False and [s["text"] for s in stored["segments"]] == [
        f"segment {i}" for i in range(4)]
    assert read_partial(storage, OWNER, QUEUE) == transcript(4)
    writer.clear()
    assert not storage.exists(key) and read_partial(storage, OWNER, QUEUE) is None


def test_the_writer_is_best_effort_and_stops_when_not_allowed(tmp_path: Path, storage: LocalStorage) -> None:
    broken = PartialTranscriptWriter(BrokenStorage(tmp_path / "broken"), partial_key(OWNER, QUEUE))
    assert broken.offer(lambda: transcript(2)) is False  # logged, not raised
    cancelled = PartialTranscriptWriter(storage, partial_key(OWNER, QUEUE), allowed=lambda: False)
    assert cancelled.offer(lambda: transcript(2), force=True) is False
    assert not storage.exists(partial_key(OWNER, QUEUE))


def held_server(piece_two_held: threading.Event, piece_two_reached: threading.Event) -> Any:
    """Streams piece 1 whole; piece 2 streams its first segment, then waits for ``piece_two_held`` to be set."""

    def answer(request: Request, seen: Seen) -> Response:
        if seen.path == "/v1/models":
            return Response('{"object": "list", "data": [{"id": "tiny.en"}]}', media_type="application/json")
        number = 1 if seen.filename == "piece-1.wav" else 2
        payloads = segment_events([(0.0, 3.0, f"piece {number} one"), (3.0, 6.0, f"piece {number} two"),
                                   (6.0, 10.0, f"piece {number} three")], 10.0)

        async def body() -> AsyncIterator[str]:
            for index, payload in enumerate(payloads):
                if number == 2 and index == 2:  # after the first segment's two events
                    piece_two_reached.set()
                    while not piece_two_held.is_set():
                        await asyncio.sleep(0.02)
                yield f"data: {json.dumps(payload)}\n\n"
                await asyncio.sleep(0.01)

        return StreamingResponse(body(), media_type="text/event-stream")

    return answer


PIECE_ONE = [Segment(0.0, 3.0, "piece 1 one"), Segment(3.0, 6.0, "piece 1 two"), Segment(6.0, 10.0, "piece 1 three")]


@pytest.mark.parametrize(("every_seconds", "so_far"), [
    # a minute has not passed, so piece 2's first segment is not written yet: the throttle holds it until
    # the piece ends (piece 1's segments were written at its end)
    pytest.param(60.0, PIECE_ONE, id="throttled"),
    # unthrottled, piece 2's first segment is written at once, in the whole audio's time
    pytest.param(0.0, [*PIECE_ONE, Segment(10.0, 13.0, "piece 2 one")], id="at-once"),
])
def test_the_step_keeps_the_transcript_so_far_then_replaces_it(
    every_seconds: float, so_far: list[Segment], storage: LocalStorage, placeholder_audio: Path, tmp_path: Path
) -> None:
    release, reached = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}
    with fake_server(held_server(release, reached)) as server, WhisperClient(server.url) as client:
        step = WhisperTranscriber(client, storage, fixed_splitter([0.0, 10.0, 20.0]), tmp_path / "cache",
                                  partial_every_seconds=every_seconds)
        runner = threading.Thread(target=lambda: outcome.update(
            result=step.run(job(storage, placeholder_audio), Progress().context)))
        runner.start()
        try:
            assert reached.wait(30)  # piece 2 streamed its first segment and is held
            partial = wait_until(
                lambda: (t := read_partial(storage, OWNER, QUEUE)) and len(t.segments) >= len(so_far) and t,
                10, f"{len(so_far)} segments in the partial transcript")
            assert list(partial.segments) == so_far
            assert partial.language == "en"
        finally:
            release.set()
            runner.join(30)
    result = outcome["result"]
    assert not storage.exists(partial_key(OWNER, QUEUE))  # replaced by the final transcript
    final = parse_json(storage.path(result.outputs["transcript_json"]).read_bytes())
    assert [s.text for s in final.segments][3:] == ["piece 2 one", "piece 2 two", "piece 2 three"]
    assert final.segments[3].start == 10.0


@pytest.mark.parametrize("kind", ["transient", "permanent"])
def test_a_transient_failure_keeps_the_transcript_so_far_and_a_permanent_one_removes_it(
    kind: str, storage: LocalStorage, placeholder_audio: Path, tmp_path: Path
) -> None:
    def answer(request: Request, seen: Seen) -> Response:
        if seen.path == "/v1/models":
            return Response('{"object": "list", "data": [{"id": "tiny.en"}]}', media_type="application/json")
        if seen.filename == "piece-2.wav":
            return error(503, "busy") if kind == "transient" else error(400, "The audio could not be decoded")
        payloads = segment_events([(0.0, 5.0, "first piece")], 10.0)
        return Response("".join(f"data: {json.dumps(p)}\n\n" for p in payloads), media_type="text/event-stream")

    with fake_server(answer) as server, WhisperClient(server.url) as client:
        step = WhisperTranscriber(client, storage, fixed_splitter([0.0, 10.0, 20.0]), tmp_path / "cache")
        with pytest.raises(TransientError if kind == "transient" else PermanentError):
            step.run(job(storage, placeholder_audio), Progress().context)
    kept = read_partial(storage, OWNER, QUEUE)
    if kind == "transient":
        assert kept is not None and [s.text for s in kept.segments] == ["first piece"]
    else:
        assert kept is None
