"""The Whisper client and the transcribe step, against the reference Whisper server on loopback
(real speech) and fake servers (sleeping, failing, slow), including resuming at the failed piece."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import threading
import time
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from handlers.errors import (
    PermanentError,
    ServerSleeping,
    StepCancelled,
    TransientError,
)
from handlers.media import AudioPiece, tools
from handlers.media.probe import probe
from handlers.providers.transcription import WhisperClient, WhisperTranscriber, api_base
from handlers.steps import StepContext, StepJob
from handlers.storage import artifact_key
from handlers.storage.local import LocalStorage
from handlers.transcripts import parse_json, word_error_rate
from local.models import transcription
from local.models.settings import ModelServerSettings, TranscriptionSettings
from tests.handlers.model_fakes import (
    Seen,
    error,
    fake_server,
    loading,
    plain,
    sleeping_page,
    slow,
    verbose_json,
)
from tests.handlers.test_transcripts import parse_cues
from tests.support import ServedApp, reserve_port, wait_until

REPO = Path(__file__).resolve().parents[2]
JFK = REPO.parent / "shared" / "media" / "jfk.flac"
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
needs_shared_jfk = pytest.mark.skipif(not JFK.is_file(), reason=f"{JFK} is absent (the shared media folder)")
needs_ffmpeg = pytest.mark.skipif(not tools.resolve(tools.FFMPEG).found, reason="ffmpeg is not installed")
needs_espeak = pytest.mark.skipif(not tools.resolve(tools.ESPEAK).found, reason="espeak-ng is not installed")

pytestmark = pytest.mark.timeout(120)

OWNER, QUEUE = "tutor-1", "queue-1"


# --- helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper_url() -> Iterator[str]:
    """The reference Whisper server (packaged tiny.en), loaded once for the module."""
    settings = TranscriptionSettings(cpu_threads=2, beam_size=1, server=ModelServerSettings())
    served = ServedApp(transcription.create_app(settings), reserve_port())
    try:
        wait_until(lambda: httpx.get(f"{served.url}/health").status_code == 200, 120, "the Whisper model to load")
        yield served.url
    finally:
        served.stop()


def probe_duration(path: Path) -> float:
    duration = probe(path).duration
    assert duration is not None, path
    return duration


def ffmpeg_splitter(cuts: list[float]) -> Callable[[Path, Path], list[AudioPiece]]:
    """Cuts the audio at fixed times with ``ffmpeg -ss/-t`` (a stand-in for the silence splitter)."""

    def split(audio: Path, workdir: Path) -> list[AudioPiece]:
        bounds = [0.0, *cuts, probe_duration(audio)]
        pieces = []
        for number, (start, end) in enumerate(zip(bounds, bounds[1:]), start=1):
            target = workdir / f"piece-{number}.wav"
            command = [tools.ffmpeg(), "-loglevel", "error", "-y", "-ss", f"{start}", "-t", f"{end - start}",
                       "-i", str(audio), "-ac", "1", "-ar", "16000", str(target)]
            subprocess.run(command, check=True)
            pieces.append(AudioPiece(target, start, end))
        return pieces

    return split


def fixed_splitter(bounds: list[float]) -> Callable[[Path, Path], list[AudioPiece]]:
    """Pieces that are small placeholder files (for fake servers, which do not listen)."""

    def split(audio: Path, workdir: Path) -> list[AudioPiece]:
        pieces = []
        for number, (start, end) in enumerate(zip(bounds, bounds[1:]), start=1):
            target = workdir / f"piece-{number}.wav"
            target.write_bytes(b"RIFF fake audio " + str(number).encode())
            pieces.append(AudioPiece(target, start, end))
        return pieces

    return split


def job(storage: LocalStorage, audio: Path, queue: str = QUEUE, attempt: int = 1) -> StepJob:
    key = artifact_key(OWNER, queue, "audio")
    if not storage.exists(key):
        storage.put_file(key, audio)
    return StepJob(queue, OWNER, "attachment-1", "transcribe", attempt, {}, {"audio-convert": {"audio": key}})


class Progress:
    def __init__(self) -> None:
        self.values: list[int] = []
        self.details: list[str | None] = []
        self.context = StepContext(self._heard, min_interval=0)

    def _heard(self, percent: int, detail: str | None) -> None:
        self.values.append(percent)
        self.details.append(detail)


def write_wav(path: Path, frames: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)


# --- the real server: real speech ------------------------------------------------------------


@needs_shared_jfk
def test_shared_jfk_transcribed_by_the_reference_server(whisper_url: str) -> None:
    with WhisperClient(whisper_url + "/v1") as client:
        transcript = client.transcribe(JFK)
    assert word_error_rate(JFK_TEXT, transcript.text) < 0.15
    assert transcript.language == "en"
    assert transcript.duration == pytest.approx(11.0, abs=0.5)
    assert transcript.model == "tiny.en"
    assert transcript.segments and all(s.start < s.end for s in transcript.segments)


@needs_shared_jfk
@needs_ffmpeg
def test_shared_jfk_through_the_transcribe_step(whisper_url: str, storage: LocalStorage, tmp_path: Path) -> None:
    ogg = tmp_path / "jfk.ogg"
    subprocess.run([tools.ffmpeg(), "-loglevel", "error", "-i", str(JFK), "-ac", "1", "-ar", "16000", "-c:a", "libopus",
                    "-b:a", "24k", str(ogg)], check=True)
    woken: list[bool] = []
    progress = Progress()
    with WhisperClient(whisper_url) as client:
        step = WhisperTranscriber(client, storage, ffmpeg_splitter([]), tmp_path / "cache",
                                  wake_next=lambda: woken.append(True))
        result = step.run(job(storage, ogg), progress.context)
    outputs = result.outputs
    assert result.provider == f"whisper-server@{client.host}" and client.host.startswith("127.0.0.1:")
    assert result.model == "tiny.en"
    assert outputs["language"] == "en"
    assert outputs["duration_seconds"] == pytest.approx(11.0, abs=0.5)
    for fmt in ("json", "srt", "vtt", "txt"):
        assert outputs[f"transcript_{fmt}"] == artifact_key(OWNER, QUEUE, f"transcript_{fmt}")
    stored = parse_json(storage.path(outputs["transcript_json"]).read_bytes())
    assert word_error_rate(JFK_TEXT, stored.text) < 0.15
    assert outputs["segments"] == len(stored.segments) > 0
    for kind in ("srt", "vtt"):
        cues = parse_cues(storage.path(outputs[f"transcript_{kind}"]).read_text(), kind)
        assert len(cues) == len(stored.segments)
        assert word_error_rate(JFK_TEXT, " ".join(text for _, _, text in cues)) < 0.15
    assert word_error_rate(JFK_TEXT, storage.path(outputs["transcript_txt"]).read_text()) < 0.15
    assert progress.values and progress.values == sorted(progress.values) and progress.values[-1] >= 98
    assert not (tmp_path / "cache" / QUEUE).exists()
    wait_until(lambda: woken, 5, "the next server to be woken")


@needs_espeak
@needs_ffmpeg
def test_synthesised_speech_in_two_pieces_keeps_its_times(whisper_url: str, storage: LocalStorage,
                                                          tmp_path: Path) -> None:
    sentences = ["The quick brown fox jumps over the lazy dog.", "Please send the report before Friday."]
    frames, rate = b"", 22050
    for number, sentence in enumerate(sentences):
        wav = tmp_path / f"s{number}.wav"
        subprocess.run([tools.espeak(), "-v", "en-us", "-s", "150", "-w", str(wav), sentence], check=True)
        with wave.open(str(wav)) as clip:
            rate = clip.getframerate()
            frames += clip.readframes(clip.getnframes())
        if number == 0:
            boundary = len(frames) / 2 / rate + 0.75
            frames += b"\0\0" * int(rate * 1.5)
    speech = tmp_path / "speech.wav"
    write_wav(speech, frames, rate)
    with WhisperClient(whisper_url) as client:
        step = WhisperTranscriber(client, storage, ffmpeg_splitter([boundary]), tmp_path / "cache")
        result = step.run(job(storage, speech), Progress().context)
    transcript = parse_json(storage.path(result.outputs["transcript_json"]).read_bytes())
    assert word_error_rate(" ".join(sentences), transcript.text) < 0.35
    later = [s for s in transcript.segments if "friday" in s.text.lower()]
    assert later and later[0].start >= boundary - 0.01
    assert transcript.duration == pytest.approx(len(frames) / 2 / rate, abs=0.1)


def test_reference_server_ping_and_model(whisper_url: str) -> None:
    with WhisperClient(whisper_url) as client:
        assert client.ping() is True
        assert client.model_name() == "tiny.en"


# --- resuming at the failed piece -------------------------------------------------------------


def test_a_failed_piece_is_the_only_one_transcribed_again(
    storage: LocalStorage, placeholder_audio: Path, tmp_path: Path
) -> None:
    def answer(request: Request, seen: Seen) -> Response:
        number = int(re.findall(r"\d+", seen.filename or "0")[0])
        if number == 2 and server.by_file[seen.filename or ""] == 1:
            return loading(7.0, "tiny.en")
        return verbose_json([(0.0, 4.0, f"piece {number} first"), (4.5, 9.0, f"piece {number} second")],
                            duration=10.0)

    with fake_server(answer) as server, WhisperClient(server.url, model="whisper-1") as client:
        step = WhisperTranscriber(client, storage, fixed_splitter([0.0, 10.0, 20.0, 28.0]), tmp_path / "cache")
        first = Progress()
        with pytest.raises(ServerSleeping) as caught:
            step.run(job(storage, placeholder_audio), first.context)
        assert caught.value.retry_after == 7.0
        assert dict(server.by_file) == {"piece-1.wav": 1, "piece-2.wav": 1}
        assert (tmp_path / "cache" / QUEUE / "piece-1.json").is_file()
        assert first.values and max(first.values) < 50

        second = Progress()
        result = step.run(job(storage, placeholder_audio, attempt=2), second.context)
    assert dict(server.by_file) == {"piece-1.wav": 1, "piece-2.wav": 2, "piece-3.wav": 1}
    transcript = parse_json(storage.path(result.outputs["transcript_json"]).read_bytes())
    assert [(s.start, s.end, s.text) for s in transcript.segments] == [
        (0.0, 4.0, "piece 1 first"), (4.5, 9.0, "piece 1 second"),
        (10.0, 14.0, "piece 2 first"), (14.5, 19.0, "piece 2 second"),
        (20.0, 24.0, "piece 3 first"), (24.5, 29.0, "piece 3 second"),
    ]
    assert transcript.duration == 28.0
    assert result.outputs["segments"] == 6
    assert second.values[0] > 30  # piece 1 was already done
    assert not (tmp_path / "cache" / QUEUE).exists()


def test_pieces_that_changed_are_transcribed_again(
    storage: LocalStorage, placeholder_audio: Path, tmp_path: Path
) -> None:
    def answer(request: Request, seen: Seen) -> Response:
        return verbose_json([(0.0, 1.0, "x")], duration=5.0)

    cache = tmp_path / "cache" / QUEUE
    cache.mkdir(parents=True)
    stale = {"start": 0.0, "end": 3.0, "transcript": {"segments": [{"start": 0, "end": 1, "text": "stale"}]}}
    (cache / "piece-1.json").write_text(json.dumps(stale))
    with fake_server(answer) as server, WhisperClient(server.url) as client:
        step = WhisperTranscriber(client, storage, fixed_splitter([0.0, 5.0]), tmp_path / "cache")
        result = step.run(job(storage, placeholder_audio), Progress().context)
    assert server.by_file["piece-1.wav"] == 1
    assert "stale" not in storage.path(result.outputs["transcript_txt"]).read_text()


def test_a_permanent_failure_clears_the_work_folder(
    storage: LocalStorage, placeholder_audio: Path, tmp_path: Path
) -> None:
    def answer(request: Request, seen: Seen) -> Response:
        if seen.filename == "piece-2.wav":
            return error(400, "The audio could not be decoded: it is not an audio file.")
        return verbose_json([(0.0, 1.0, "fine")], duration=5.0)

    with fake_server(answer) as server, WhisperClient(server.url) as client:
        step = WhisperTranscriber(client, storage, fixed_splitter([0.0, 5.0, 10.0]), tmp_path / "cache")
        with pytest.raises(PermanentError, match="could not be decoded"):
            step.run(job(storage, placeholder_audio), Progress().context)
    assert not (tmp_path / "cache" / QUEUE).exists()


def test_missing_audio_input_is_permanent(storage: LocalStorage, tmp_path: Path) -> None:
    with WhisperClient("http://127.0.0.1:9") as client:
        step = WhisperTranscriber(client, storage, fixed_splitter([0.0, 1.0]), tmp_path / "cache")
        no_input = StepJob(QUEUE, OWNER, "a", "transcribe", 1, {}, {})
        with pytest.raises(PermanentError, match="no audio"):
            step.run(no_input, Progress().context)
        missing = StepJob(QUEUE, OWNER, "a", "transcribe", 1, {}, {"audio-convert": {"audio": "tutor-1/q/audio.ogg"}})
        with pytest.raises(PermanentError, match="missing from storage"):
            step.run(missing, Progress().context)


def test_cancellation_stops_between_pieces(storage: LocalStorage, placeholder_audio: Path, tmp_path: Path) -> None:
    progress = Progress()

    def answer(request: Request, seen: Seen) -> Response:
        progress.context.cancel()
        return verbose_json([(0.0, 1.0, "x")], duration=5.0)

    with fake_server(answer) as server, WhisperClient(server.url) as client:
        step = WhisperTranscriber(client, storage, fixed_splitter([0.0, 5.0, 10.0, 15.0]), tmp_path / "cache")
        with pytest.raises(StepCancelled):
            step.run(job(storage, placeholder_audio), progress.context)
    assert sum(server.by_file.values()) == 1
    assert not (tmp_path / "cache" / QUEUE).exists()


def test_stale_work_folders_are_pruned(storage: LocalStorage, placeholder_audio: Path, tmp_path: Path) -> None:
    stale, fresh = tmp_path / "cache" / "old-queue", tmp_path / "cache" / "other-queue"
    for folder in (stale, fresh):
        folder.mkdir(parents=True)
        (folder / "piece-1.json").write_text("{}")
    os.utime(stale, (time.time() - 8 * 86400,) * 2)

    def answer(request: Request, seen: Seen) -> Response:
        return verbose_json([(0.0, 1.0, "x")], duration=1.0)

    with fake_server(answer) as server, WhisperClient(server.url) as client:
        step = WhisperTranscriber(client, storage, fixed_splitter([0.0, 1.0]), tmp_path / "cache")
        step.run(job(storage, placeholder_audio), Progress().context)
    assert not stale.exists() and fresh.exists()


# --- sleeping and failing servers, classified ----------------------------------------------------


def test_a_server_asleep_for_two_requests_then_answers(tmp_path: Path) -> None:
    def answer(request: Request, seen: Seen) -> Response:
        if len(server.seen) <= 2:
            return loading(4.0, "tiny.en")
        return verbose_json([(0.0, 1.0, "awake")], duration=1.0)

    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    with fake_server(answer) as server, WhisperClient(server.url) as client:
        for _ in range(2):
            with pytest.raises(ServerSleeping) as caught:
                client.transcribe(audio)
            assert caught.value.retry_after == 4.0
            assert "is loading" in str(caught.value) and client.host in str(caught.value)
        assert client.transcribe(audio).text == "awake"


async def _slow(request: Request, seen: Seen) -> Response:
    return await slow(1.0, verbose_json([], duration=0.0))


FAILURES: dict[str, tuple[Callable[[Request, Seen], Any], type[Exception], str]] = {
    "html-sleeping": (lambda r, s: sleeping_page(503), ServerSleeping, "sleeping"),
    "html-sleeping-200": (lambda r, s: sleeping_page(200), ServerSleeping, "sleeping"),
    "502": (lambda r, s: plain(502, "Bad Gateway"), TransientError, "502"),
    "504": (lambda r, s: plain(504, "Gateway Timeout", **{"Retry-After": "30"}), TransientError, "in about 30 s"),
    "slow": (_slow, TransientError, "did not answer in time"),
    "401": (lambda r, s: error(401, "Invalid credentials in Authorization header"), PermanentError,
            "rejected our credentials (check WHISPER_API_KEY)"),
    "422": (lambda r, s: error(422, "language 'xx' is not supported"), PermanentError, "language 'xx'"),
    "not-a-transcript": (lambda r, s: plain(200, "ok"), TransientError, "without a transcript"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_failures_are_classified(case: str, tmp_path: Path) -> None:
    handler, kind, words = FAILURES[case]
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    with fake_server(handler) as server, WhisperClient(server.url, timeout=0.5) as client:
        with pytest.raises(kind) as caught:
            client.transcribe(audio)
    assert type(caught.value) is kind
    assert words in str(caught.value)
    assert f"Whisper server ({client.host})" in str(caught.value)


def test_refused_connection_is_transient_and_ping_is_false(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        audio = tmp_path / "a.wav"
        audio.write_bytes(b"RIFF")
        with WhisperClient(url) as client:
            with pytest.raises(TransientError, match="could not be reached"):
                client.transcribe(audio)
            assert client.ping() is False


def test_request_shape_and_bearer_token(tmp_path: Path) -> None:
    def answer(request: Request, seen: Seen) -> Response:
        if seen.path == "/v1/models":
            return Response('{"object": "list", "data": [{"id": "large-v3"}]}', media_type="application/json")
        return verbose_json([(0.0, 1.0, "hi")], duration=1.0, language="de")

    audio = tmp_path / "lecture.ogg"
    audio.write_bytes(b"OggS")
    with fake_server(answer) as server, WhisperClient(server.url + "/v1/audio/transcriptions/",
                                                      api_key="sekret", language="de") as client:
        transcript = client.transcribe(audio)
    request = next(s for s in server.seen if s.method == "POST")
    assert request.path == "/v1/audio/transcriptions"
    assert request.headers["authorization"] == "Bearer sekret"
    assert request.form == {"model": "whisper-1", "response_format": "verbose_json",
                            "timestamp_granularities[]": "segment", "language": "de", "stream": "true"}
    assert request.filename == "lecture.ogg" and request.file_bytes == b"OggS"
    assert transcript.model == "large-v3" and transcript.language == "de"


def test_plain_json_answer_becomes_one_segment(tmp_path: Path) -> None:
    def answer(request: Request, seen: Seen) -> Response:
        return Response('{"text": " hello there ", "duration": 3.5}', media_type="application/json")

    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    with fake_server(answer) as server, WhisperClient(server.url) as client:
        transcript = client.transcribe(audio)
    assert [(s.start, s.end, s.text) for s in transcript.segments] == [(0.0, 3.5, "hello there")]


def test_api_base_accepts_every_spelling() -> None:
    for url in ("https://x.hf.space", "https://x.hf.space/", "https://x.hf.space/v1",
                "https://x.hf.space/v1/audio/transcriptions"):
        assert api_base(url) == "https://x.hf.space"


def test_ping_wakes_a_sleeping_server() -> None:
    async def answer(request: Request, seen: Seen) -> Response:
        await asyncio.sleep(0)
        return loading(3.0) if len(server.seen) == 1 else plain(200, "ok")

    with fake_server(answer) as server, WhisperClient(server.url) as client:
        assert client.ping() is False
        assert client.ping() is True
    assert [s.path for s in server.seen] == ["/health", "/health"]


# --- streamed progress ----------------------------------------------------------------------------


def events(*payloads: dict[str, Any]) -> Response:
    """A server-sent event stream of ``payloads`` (as the reference server writes it), sent in one piece."""
    body = "".join(f"data: {json.dumps(payload)}\n\n" for payload in payloads)
    return Response(body, media_type="text/event-stream")


def paced_events(*groups: list[dict[str, Any]], pause: float = 0.1) -> StreamingResponse:
    """Each group of events written at once, ``pause`` seconds after the group before (batches as they decode)."""

    async def body() -> AsyncIterator[str]:
        for group in groups:
            yield "".join(f"data: {json.dumps(payload)}\n\n" for payload in group)
            await asyncio.sleep(pause)

    return StreamingResponse(body(), media_type="text/event-stream")


def segment_events(segments: list[tuple[float, float, str]], duration: float) -> list[dict[str, Any]]:
    payloads: list[dict[str, Any]] = []
    for index, (start, end, text) in enumerate(segments):
        payloads.append({"type": "transcript.text.delta", "delta": " " + text, "segment_id": f"seg_{index}"})
        payloads.append({"type": "transcript.text.segment", "id": f"seg_{index}", "start": start, "end": end,
                         "text": " " + text})
    done = json.loads(verbose_json(segments, duration=duration).body)
    return [*payloads, {"type": "transcript.text.done", **done}]


@needs_espeak
@needs_ffmpeg
def test_progress_moves_with_each_segment_the_reference_server_streams(
    whisper_url: str, storage: LocalStorage, tmp_path: Path
) -> None:
    sentences = [
        "Photosynthesis turns light into chemical energy inside the leaves of green plants.",
        "Chlorophyll absorbs red and blue light and reflects the green we see.",
        "Water is split and oxygen is released into the air as a by product.",
        "Carbon dioxide enters through small pores called stomata on the underside of the leaf.",
        "The Calvin cycle fixes that carbon into sugars the plant can store or burn.",
        "Without this process there would be almost no oxygen in our atmosphere.",
    ]
    frames, rate = b"", 22050
    for number, sentence in enumerate(sentences * 2):
        wav = tmp_path / f"s{number}.wav"
        subprocess.run([tools.espeak(), "-v", "en-us", "-s", "140", "-w", str(wav), sentence], check=True)
        with wave.open(str(wav)) as clip:
            rate = clip.getframerate()
            frames += clip.readframes(clip.getnframes()) + b"\0\0" * int(rate * 1.2)
    speech = tmp_path / "lecture.wav"
    write_wav(speech, frames, rate)
    progress = Progress()
    # one speech chunk per batch, so the segments come as they are decoded (with 8 they come at once)
    settings = TranscriptionSettings(cpu_threads=2, beam_size=1, batch_size=1, server=ModelServerSettings())
    served = ServedApp(transcription.create_app(settings), reserve_port())
    try:
        wait_until(lambda: httpx.get(f"{served.url}/health").status_code == 200, 120, "the Whisper model to load")
        with WhisperClient(served.url) as client:
            step = WhisperTranscriber(client, storage, ffmpeg_splitter([]), tmp_path / "cache")
            result = step.run(job(storage, speech), progress.context)
            assert client.streams is True
    finally:
        served.stop()
    assert result.outputs["segments"] >= 3
    during = progress.values[:-1]  # the last report is the piece's end
    assert len(during) >= 2, progress.values
    assert progress.values == sorted(set(progress.values)) and progress.values[-1] == 98
    assert all(detail and re.fullmatch(r"transcribed \d+:\d\d of 1:\d\d", detail)
               for detail in progress.details[:-1])


def test_progress_spans_the_pieces_in_order(storage: LocalStorage, placeholder_audio: Path, tmp_path: Path) -> None:
    def answer(request: Request, seen: Seen) -> Response:
        if seen.path == "/v1/models":
            return Response('{"object": "list", "data": [{"id": "tiny.en"}]}', media_type="application/json")
        assert seen.form.get("stream") == "true"
        payloads = segment_events([(0.0, 2.5, "one"), (2.5, 5.0, "two"), (5.0, 10.0, "three")], 10.0)
        return paced_events(*([payload] for payload in payloads))

    progress = Progress()
    with fake_server(answer) as server, WhisperClient(server.url) as client:
        step = WhisperTranscriber(client, storage, fixed_splitter([0.0, 10.0, 20.0]), tmp_path / "cache")
        result = step.run(job(storage, placeholder_audio), progress.context)
    assert progress.values == [12, 24, 49, 61, 73, 98]  # 98 % spread over 20 s, per segment end
    assert result.outputs["segments"] == 6
    transcript = parse_json(storage.path(result.outputs["transcript_json"]).read_bytes())
    assert [s.text for s in transcript.segments] == ["one", "two", "three"] * 2
    assert transcript.segments[3].start == 10.0


def test_segments_arriving_together_are_reported_once_at_the_last(
    storage: LocalStorage, placeholder_audio: Path, tmp_path: Path
) -> None:
    def answer(request: Request, seen: Seen) -> Response:
        if seen.path == "/v1/models":
            return Response('{"object": "list", "data": [{"id": "tiny.en"}]}', media_type="application/json")
        payloads = segment_events([(0.0, 2.0, "a"), (2.0, 4.0, "b"), (4.0, 6.0, "c"), (6.0, 10.0, "d")], 10.0)
        return paced_events(payloads[:4], payloads[4:8], payloads[8:])  # two batches of two, then done

    progress = Progress()
    with fake_server(answer) as server, WhisperClient(server.url) as client:
        step = WhisperTranscriber(client, storage, fixed_splitter([0.0, 10.0]), tmp_path / "cache")
        step.run(job(storage, placeholder_audio), progress.context)
    assert progress.values == [39, 98]  # 4 s of 10 after the first batch; the second ends the piece


@pytest.mark.parametrize("status", [400, 404, 415, 422])
def test_a_server_that_refuses_stream_is_asked_again_without_it(status: int, tmp_path: Path) -> None:
    def answer(request: Request, seen: Seen) -> Response:
        if "stream" in seen.form:
            return error(status, "unknown parameter: stream")
        return verbose_json([(0.0, 1.0, "plain")], duration=1.0)

    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    with fake_server(answer) as server, WhisperClient(server.url) as client:
        assert client.transcribe(audio).text == "plain"
        assert client.transcribe(audio).text == "plain"
        assert client.streams is False
    asked = [("stream" in seen.form) for seen in server.seen if seen.method == "POST"]
    assert asked == [True, False, False]  # refused once, then never asked to stream again


def test_a_refused_stream_and_a_failing_plain_request_is_the_plain_error(tmp_path: Path) -> None:
    def answer(request: Request, seen: Seen) -> Response:
        return error(400, "The audio could not be decoded")

    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    with fake_server(answer) as server, WhisperClient(server.url) as client:
        with pytest.raises(PermanentError, match="could not be decoded"):
            client.transcribe(audio)
        assert client.streams is None  # it may stream still: the input was the problem
    assert len(server.seen) == 2


@pytest.mark.parametrize(
    ("payloads", "words"),
    [
        ([{"type": "transcript.text.segment", "id": "seg_0", "start": 0.0, "end": 1.0, "text": "cut"}],
         "ended its stream before the transcript was complete"),
        ([{"type": "error", "error": "Transcription failed: RuntimeError: out of memory"}],
         "failed while transcribing: Transcription failed: RuntimeError: out of memory"),
    ],
    ids=["cut-short", "error-event"],
)
def test_a_broken_stream_is_transient(payloads: list[dict[str, Any]], words: str, tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    with fake_server(lambda r, s: events(*payloads)) as server, WhisperClient(server.url) as client:
        with pytest.raises(TransientError) as caught:
            client.transcribe(audio)
    assert type(caught.value) is TransientError and words in str(caught.value)


def test_a_busy_reference_server_is_retried_later(tmp_path: Path) -> None:
    settings = TranscriptionSettings(cpu_threads=2, max_queued=0, server=ModelServerSettings())
    app = transcription.create_app(settings)
    served = ServedApp(app, reserve_port())
    audio = tmp_path / "tone.wav"
    write_wav(audio, b"\0\0" * 8000, 16000)
    try:
        wait_until(lambda: httpx.get(f"{served.url}/health").status_code == 200, 120, "the Whisper model to load")
        gate = threading.Event()
        app.state.slot.submit(gate.wait)
        with httpx.Client(base_url=served.url, timeout=30) as raw, WhisperClient(served.url) as client:
            waiting = threading.Thread(
                target=lambda: raw.post("/v1/audio/transcriptions", files={"file": ("t.wav", audio.read_bytes())}))
            waiting.start()
            wait_until(lambda: raw.get("/health").json()["queue"]["waiting"] == 1, 10, "the first request to queue")
            with pytest.raises(TransientError) as caught:
                client.transcribe(audio)
            gate.set()
            waiting.join(30)
        assert type(caught.value) is TransientError  # busy is not asleep
        assert caught.value.retry_after is not None and caught.value.retry_after >= 1
        assert "is busy" in str(caught.value)
    finally:
        served.stop()


def test_a_server_streaming_its_own_dialect_is_asked_again_without_stream(tmp_path: Path) -> None:
    def answer(request: Request, seen: Seen) -> Response:
        if "stream" in seen.form:  # another server's streaming: bare segments, no event types
            return events({"start": 0.0, "end": 1.0, "text": "own"}, {"start": 1.0, "end": 2.0, "text": "dialect"})
        return verbose_json([(0.0, 2.0, "own dialect")], duration=2.0)

    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    with fake_server(answer) as server, WhisperClient(server.url) as client:
        assert client.transcribe(audio).text == "own dialect"
        assert client.streams is False
    assert [("stream" in seen.form) for seen in server.seen if seen.method == "POST"] == [True, False]
