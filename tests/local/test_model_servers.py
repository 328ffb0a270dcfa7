"""The reference model servers, served for real on loopback and called over HTTP.

Each server's model loads once per module (module-scoped fixtures); the
sleeping/loading tests start small extra servers whose models load in a
fraction of a second because the libraries are already imported.
"""

from __future__ import annotations

import io
import json
import math
import re
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from handlers.media import tools
from handlers.transcripts import word_error_rate
from local.models import embeddings, transcription
from local.models.formats import timestamp
from local.models.settings import (
    EmbeddingSettings,
    ModelServerSettings,
    TranscriptionSettings,
)

REPO = Path(__file__).resolve().parents[2]
SHARED_MEDIA = REPO.parent / "shared" / "media"
JFK = SHARED_MEDIA / "jfk.flac"
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
needs_shared_jfk = pytest.mark.skipif(
    not JFK.is_file(), reason=f"{JFK} is absent (the shared media folder beside the repository)"
)

pytestmark = pytest.mark.timeout(240)


# --- helpers ---------------------------------------------------------------


def tone_wav(seconds: float = 2.0, frequency: float = 440.0, rate: int = 16_000) -> bytes:
    """A sine tone as 16-bit mono WAV, generated here."""
    frames = bytearray()
    for n in range(int(seconds * rate)):
        sample = int(8000 * math.sin(2 * math.pi * frequency * n / rate))
        frames += sample.to_bytes(2, "little", signed=True)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopbackServer:
    """Serves an app with uvicorn in a background thread on a free loopback port."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def wait_for_state(client: httpx.Client, states: set[str], timeout: float = 120.0) -> httpx.Response:
    """Poll ``/health`` until its ``status`` is one of ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/health")
        if response.json()["status"] in states:
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"server stayed {response.json()} for {timeout} s")
        time.sleep(0.05)


@contextmanager
def served(app: FastAPI) -> Iterator[httpx.Client]:
    with LoopbackServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def transcription_app(**server: object) -> FastAPI:
    settings = TranscriptionSettings(cpu_threads=2, server=ModelServerSettings(**server))
    return transcription.create_app(settings)


def embedding_app(**server: object) -> FastAPI:
    return embeddings.create_app(EmbeddingSettings(server=ModelServerSettings(**server)))


# --- fixtures --------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper() -> Iterator[httpx.Client]:
    """The transcription server with the packaged tiny.en, loaded."""
    with served(transcription_app()) as client:
        wait_for_state(client, {"ready"})
        yield client


@pytest.fixture(scope="module")
def embedder() -> Iterator[httpx.Client]:
    """The embedding server with the packaged all-MiniLM-L6-v2, loaded."""
    with served(embedding_app()) as client:
        wait_for_state(client, {"ready"})
        yield client


def transcribe(
    client: httpx.Client, audio: bytes, name: str = "audio.wav", timeout: float | None = None, **form: str
) -> httpx.Response:
    options = {"timeout": timeout} if timeout is not None else {}
    return client.post("/v1/audio/transcriptions", files={"file": (name, audio)}, data=form, **options)


def embed(client: httpx.Client, texts: str | list[str]) -> list[list[float]]:
    response = client.post("/v1/embeddings", json={"input": texts, "model": "all-MiniLM-L6-v2"})
    assert response.status_code == 200, response.text
    return [item["embedding"] for item in response.json()["data"]]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


# --- transcription: real speech ----------------------------------------------


@needs_shared_jfk
def test_shared_jfk_json_transcript_is_accurate(whisper: httpx.Client) -> None:
    response = transcribe(whisper, JFK.read_bytes(), "jfk.flac", model="whisper-1")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert word_error_rate(JFK_TEXT, response.json()["text"]) < 0.15


@needs_shared_jfk
def test_shared_jfk_verbose_json_has_ordered_segments(whisper: httpx.Client) -> None:
    response = transcribe(whisper, JFK.read_bytes(), "jfk.flac", response_format="verbose_json", language="en")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task"] == "transcribe"
    assert body["language"] == "en"
    assert body["duration"] == pytest.approx(11.0, abs=0.5)
    assert word_error_rate(JFK_TEXT, body["text"]) < 0.15
    segments = body["segments"]
    assert segments
    fields = {"id", "seek", "start", "end", "text", "tokens", "temperature"}
    fields |= {"avg_logprob", "compression_ratio", "no_speech_prob"}
    assert all(fields <= segment.keys() for segment in segments)
    assert [segment["id"] for segment in segments] == list(range(len(segments)))
    for earlier, later in zip(segments, segments[1:]):
        assert earlier["start"] < earlier["end"] <= later["start"] < later["end"]
    assert segments[-1]["end"] <= body["duration"] + 0.5
    assert word_error_rate(JFK_TEXT, "".join(segment["text"] for segment in segments)) < 0.15


@needs_shared_jfk
def test_shared_jfk_word_timestamps(whisper: httpx.Client) -> None:
    response = transcribe(
        whisper, JFK.read_bytes(), "jfk.flac", response_format="verbose_json", **{"timestamp_granularities[]": "word"}
    )
    assert response.status_code == 200, response.text
    words = response.json()["words"]
    assert len(words) >= 20
    starts = [word["start"] for word in words]
    assert starts == sorted(starts)


@needs_shared_jfk
@pytest.mark.parametrize("response_format", ["srt", "vtt"])
def test_shared_jfk_subtitles_parse(whisper: httpx.Client, response_format: str) -> None:
    response = transcribe(whisper, JFK.read_bytes(), "jfk.flac", response_format=response_format)
    assert response.status_code == 200, response.text
    cues = parse_subtitles(response.text, response_format)
    assert cues
    times = [t for start, end, _ in cues for t in (start, end)]
    assert times == sorted(times)
    assert cues[-1][1] == pytest.approx(11.0, abs=0.6)
    assert word_error_rate(JFK_TEXT, " ".join(text for _, _, text in cues)) < 0.15


@needs_shared_jfk
def test_shared_jfk_plain_text(whisper: httpx.Client) -> None:
    response = transcribe(whisper, JFK.read_bytes(), "jfk.flac", response_format="text")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert word_error_rate(JFK_TEXT, response.text) < 0.15


def parse_subtitles(body: str, response_format: str) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue; asserts the SRT/VTT layout on the way."""
    separator = "," if response_format == "srt" else "."
    if response_format == "vtt":
        assert body.startswith("WEBVTT\n\n")
        body = body.removeprefix("WEBVTT\n\n")
    pattern = re.compile(rf"^(\d\d):(\d\d):(\d\d){re.escape(separator)}(\d\d\d)$")
    cues = []
    for number, block in enumerate(body.strip().split("\n\n"), start=1):
        lines = block.split("\n")
        if response_format == "srt":
            assert lines.pop(0) == str(number)
        start, arrow, end = lines[0].split(" ")
        assert arrow == "-->"
        cues.append((_seconds(pattern, start), _seconds(pattern, end), " ".join(lines[1:])))
    return cues


def _seconds(pattern: re.Pattern[str], stamp: str) -> float:
    match = pattern.match(stamp)
    assert match, stamp
    hours, minutes, seconds, millis = (int(group) for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


@pytest.mark.skipif(not tools.resolve(tools.ESPEAK).found, reason="espeak-ng is not installed (make install)")
def test_transcribes_speech_synthesised_on_the_fly(whisper: httpx.Client, tmp_path: Path) -> None:
    sentence = "The quick brown fox jumps over the lazy dog. Please send the report before Friday."
    wav = tmp_path / "speech.wav"
    subprocess.run([tools.espeak(), "-v", "en-us", "-s", "150", "-w", str(wav), sentence], check=True)
    response = transcribe(whisper, wav.read_bytes(), response_format="verbose_json")
    assert response.status_code == 200, response.text
    assert word_error_rate(sentence, response.json()["text"]) < 0.35


def test_generated_tone_is_transcribed_without_error(whisper: httpx.Client) -> None:
    response = transcribe(whisper, tone_wav(2.0), response_format="verbose_json")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["duration"] == pytest.approx(2.0, abs=0.05)
    assert isinstance(body["segments"], list)


@pytest.mark.skipif(not tools.resolve(tools.FFMPEG).found, reason="ffmpeg is not installed (make install)")
def test_compressed_audio_generated_by_ffmpeg(whisper: httpx.Client, tmp_path: Path) -> None:
    source, ogg = tmp_path / "tone.wav", tmp_path / "tone.ogg"
    source.write_bytes(tone_wav(1.5))
    subprocess.run([tools.ffmpeg(), "-loglevel", "error", "-i", str(source), "-c:a", "libvorbis", str(ogg)], check=True)
    response = transcribe(whisper, ogg.read_bytes(), "tone.ogg", response_format="verbose_json")
    assert response.status_code == 200, response.text
    assert response.json()["duration"] == pytest.approx(1.5, abs=0.1)


# --- transcription: streamed, batched or sequential ----------------------------


def server_events(body: str) -> list[dict[str, object]]:
    """The JSON of every ``data:`` event of a server-sent event stream, asserting its framing."""
    assert body.endswith("\n\n")
    events = []
    for block in body.strip().split("\n\n"):
        assert block.startswith("data: "), block
        events.append(json.loads(block.removeprefix("data: ")))
    return events


@needs_shared_jfk
def test_streamed_transcription_sends_each_segment_then_the_whole_result(whisper: httpx.Client) -> None:
    plain = transcribe(whisper, JFK.read_bytes(), "jfk.flac", response_format="verbose_json").json()
    response = transcribe(whisper, JFK.read_bytes(), "jfk.flac", response_format="verbose_json", stream="true")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = server_events(response.text)
    done = events[-1]
    assert done["type"] == "transcript.text.done"
    assert {key for key in done if key != "type"} == set(plain)  # verbose_json's fields, every one
    assert done["segments"] == plain["segments"] and done["text"] == plain["text"]
    segments = [event for event in events if event["type"] == "transcript.text.segment"]
    deltas = [event for event in events if event["type"] == "transcript.text.delta"]
    assert len(segments) == len(deltas) == len(plain["segments"]) and len(events) == 2 * len(segments) + 1
    assert [(e["start"], e["end"], e["text"]) for e in segments] == [
        (s["start"], s["end"], s["text"]) for s in plain["segments"]
    ]
    assert "".join(str(delta["delta"]) for delta in deltas).strip() == plain["text"]
    assert word_error_rate(JFK_TEXT, str(done["text"])) < 0.15


def test_streamed_plain_json_and_refused_formats(whisper: httpx.Client) -> None:
    events = server_events(transcribe(whisper, tone_wav(1.0), stream="true").text)
    assert events[-1]["type"] == "transcript.text.done"
    assert set(events[-1]) == {"type", "text", "usage"}
    refused = transcribe(whisper, tone_wav(0.3), response_format="srt", stream="true")
    assert refused.status_code == 422
    assert "stream=true works with response_format json or verbose_json" in refused.json()["error"]
    assert transcribe(whisper, tone_wav(0.3), stream="maybe").status_code == 422


@needs_shared_jfk
def test_batched_default_and_sequential_answer_the_same_shape() -> None:
    """The default is batched decoding cut into captions of at most 7 s; WHISPER_BATCHED=false answers alike."""
    assert TranscriptionSettings(server=ModelServerSettings()).batched is True
    fields = {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio",
              "no_speech_prob"}
    for batched in (True, False):
        settings = TranscriptionSettings(cpu_threads=2, batched=batched, server=ModelServerSettings())
        with served(transcription.create_app(settings)) as client:
            wait_for_state(client, {"ready"})
            answer = transcribe(client, JFK.read_bytes(), "jfk.flac", response_format="verbose_json").json()
            worded = transcribe(client, JFK.read_bytes(), "jfk.flac", response_format="verbose_json",
                                **{"timestamp_granularities[]": "word"}).json()
        assert set(answer) == {"task", "language", "language_probability", "model", "duration", "segments", "text",
                               "usage"}
        assert all(set(segment) == fields for segment in answer["segments"]), answer["segments"]
        assert word_error_rate(JFK_TEXT, answer["text"]) < 0.15
        ids = [s["id"] for s in answer["segments"]]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert all(s["start"] < s["end"] <= answer["duration"] + 0.5 for s in answer["segments"])
        if batched:  # the 11 s speech is one VAD chunk, cut into captions at word boundaries
            assert len(answer["segments"]) >= 2
            assert all(s["end"] - s["start"] <= 7.0 for s in answer["segments"]), answer["segments"]
        assert worded["text"] == answer["text"]
        assert " ".join(w["word"].strip() for w in worded["words"]) == " ".join(answer["text"].split())


@needs_shared_jfk
def test_one_transcription_at_a_time_and_the_overflow_is_told_to_retry() -> None:
    """max_waiting + 2 requests: one works, max_waiting wait and are served in order, the last is 503."""
    max_waiting = 2
    settings = TranscriptionSettings(cpu_threads=2, max_queued=max_waiting, server=ModelServerSettings())
    app = transcription.create_app(settings)
    with served(app) as client:
        wait_for_state(client, {"ready"})
        gate = threading.Event()
        app.state.slot.submit(gate.wait)  # hold the model's thread so the requests pile up
        started: dict[int, float] = {}
        statuses: dict[int, int] = {}

        def send(number: int) -> None:
            with client.stream("POST", "/v1/audio/transcriptions", files={"file": ("jfk.flac", JFK.read_bytes())},
                               data={"response_format": "verbose_json"}) as response:
                started[number] = time.monotonic()  # headers come when the model begins on it
                response.read()
                statuses[number] = response.status_code

        callers = []
        for number in range(1 + max_waiting):
            callers.append(threading.Thread(target=send, args=(number,)))
            callers[-1].start()
            deadline = time.monotonic() + 10
            while client.get("/health").json()["queue"]["waiting"] < number + 1:
                assert time.monotonic() < deadline, "the request never joined the queue"
                time.sleep(0.02)
        overflow = transcribe(client, JFK.read_bytes(), "jfk.flac")
        assert overflow.status_code == 503
        assert int(overflow.headers["retry-after"]) >= 1
        assert "is busy" in overflow.json()["error"]
        assert "estimated_time" not in overflow.json()  # busy, not asleep
        gate.set()
        for caller in callers:
            caller.join(120)
        assert statuses == {number: 200 for number in range(1 + max_waiting)}  # none starved
        assert sorted(started, key=started.__getitem__) == list(range(1 + max_waiting))  # first come, first served
        assert client.get("/health").json()["queue"] == {"running": 0, "waiting": 0, "max_waiting": max_waiting}
        assert transcribe(client, tone_wav(0.3)).status_code == 200


def test_a_client_that_leaves_while_waiting_gives_its_place_up() -> None:
    settings = TranscriptionSettings(cpu_threads=2, max_queued=1, server=ModelServerSettings())
    app = transcription.create_app(settings)
    with served(app) as client:
        wait_for_state(client, {"ready"})
        gate = threading.Event()
        app.state.slot.submit(gate.wait)
        with pytest.raises(httpx.ReadTimeout):
            transcribe(client, tone_wav(0.3), timeout=0.5)
        deadline = time.monotonic() + 10
        while client.get("/health").json()["queue"]["waiting"]:
            assert time.monotonic() < deadline, "the abandoned request kept its place"
            time.sleep(0.05)
        gate.set()
        assert transcribe(client, tone_wav(0.3)).status_code == 200


# --- transcription: bad input ----------------------------------------------


@pytest.mark.parametrize(
    ("files", "form", "status"),
    [
        ({"file": ("notes.txt", b"this is not audio at all\n" * 20)}, {}, 400),
        ({"file": ("empty.wav", b"")}, {}, 400),
        ({"file": ("truncated.wav", tone_wav(1.0)[:30])}, {}, 400),
        ({"file": ("tone.wav", tone_wav(0.2))}, {"response_format": "xml"}, 422),
        ({"file": ("tone.wav", tone_wav(0.2))}, {"temperature": "3"}, 422),
        ({"file": ("tone.wav", tone_wav(0.2))}, {"language": "xx"}, 422),
        ({"file": ("tone.wav", tone_wav(0.2))}, {"timestamp_granularities[]": "sentence"}, 422),
        ({}, {"response_format": "json"}, 422),
    ],
    ids=["not-audio", "empty", "truncated", "unknown-format", "temperature", "language", "granularity", "no-file"],
)
def test_bad_transcription_requests_are_4xx_and_server_keeps_serving(
    whisper: httpx.Client, files: dict[str, tuple[str, bytes]], form: dict[str, str], status: int
) -> None:
    response = whisper.post("/v1/audio/transcriptions", files=files or None, data=form)
    assert response.status_code == status, response.text
    assert response.json()["error"]
    assert whisper.get("/health").status_code == 200
    assert transcribe(whisper, tone_wav(0.3)).status_code == 200


@pytest.mark.skipif(not tools.resolve(tools.FFMPEG).found, reason="ffmpeg is not installed (make install)")
def test_video_without_audio_track_is_400(whisper: httpx.Client, tmp_path: Path) -> None:
    video = tmp_path / "silent.mp4"
    lavfi = "testsrc=duration=1:size=64x64:rate=5"
    ffmpeg = [tools.ffmpeg(), "-loglevel", "error", "-f", "lavfi", "-i", lavfi, "-c:v", "mpeg4", str(video)]
    subprocess.run(ffmpeg, check=True)
    response = transcribe(whisper, video.read_bytes(), "silent.mp4")
    assert response.status_code == 400
    assert "no audio track" in response.json()["error"]


def test_transcription_models_and_health(whisper: httpx.Client) -> None:
    queue = {"running": 0, "waiting": 0, "max_waiting": 4}
    assert whisper.get("/health").json() == {"status": "ready", "model": "tiny.en", "queue": queue}
    models = whisper.get("/v1/models").json()
    assert models["object"] == "list"
    assert [model["id"] for model in models["data"]] == ["tiny.en", "base"]  # English, and the multilingual one


# --- embeddings --------------------------------------------------------------


def test_openai_embeddings_shape(embedder: httpx.Client) -> None:
    response = embedder.post("/v1/embeddings", json={"input": ["first text", "second text"], "model": "x"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    assert body["model"] == MINILM
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert all(item["object"] == "embedding" for item in body["data"])
    assert all(len(item["embedding"]) == 384 for item in body["data"])
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    for item in body["data"]:
        assert math.sqrt(sum(x * x for x in item["embedding"])) == pytest.approx(1.0, abs=1e-4)


def test_openai_embeddings_single_string_and_base64(embedder: httpx.Client) -> None:
    import base64
    import struct

    as_floats = embed(embedder, "ask not")[0]
    response = embedder.post("/v1/embeddings", json={"input": "ask not", "encoding_format": "base64"})
    raw = base64.b64decode(response.json()["data"][0]["embedding"])
    assert list(struct.unpack("<384f", raw)) == pytest.approx(as_floats, abs=1e-6)


def test_tei_embed_shape_and_normalisation(embedder: httpx.Client) -> None:
    vectors = embedder.post("/embed", json={"inputs": ["one", "two", "three"]}).json()
    assert len(vectors) == 3 and all(len(vector) == 384 for vector in vectors)
    assert all(math.sqrt(sum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-4) for vector in vectors)
    single = embedder.post("/embed", json={"inputs": "one"}).json()
    assert len(single) == 1 and single[0] == pytest.approx(vectors[0], abs=1e-5)
    # all-MiniLM-L6-v2 ends in a Normalize module, so even "normalize": false is unit length
    raw = embedder.post("/embed", json={"inputs": "one", "normalize": False})
    assert raw.status_code == 200
    assert cosine(raw.json()[0], vectors[0]) == pytest.approx(1.0, abs=1e-5)


def test_similar_sentences_are_nearer(embedder: httpx.Client) -> None:
    jfk, query, unrelated = embed(
        embedder, [JFK_TEXT, "ask what you can do for your country", "The recipe needs two cups of flour and an egg."]
    )
    assert cosine(query, jfk) > cosine(query, unrelated) + 0.2


def test_embedding_info_and_models(embedder: httpx.Client) -> None:
    info = embedder.get("/info").json()
    assert info["model_id"] == MINILM
    assert info["dimension"] == 384
    assert info["max_client_batch_size"] >= 1
    assert [model["id"] for model in embedder.get("/v1/models").json()["data"]] == [info["model_id"]]
    assert embedder.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/embeddings", {"input": ""}, 422),
        ("/v1/embeddings", {"input": []}, 422),
        ("/v1/embeddings", {"input": ["fine", "   "]}, 422),
        ("/v1/embeddings", {"input": [[1, 2, 3]]}, 422),
        ("/v1/embeddings", {"model": "x"}, 422),
        ("/v1/embeddings", {"input": "x", "dimensions": 1024}, 422),
        ("/v1/embeddings", {"input": ["x"] * 129}, 413),
        ("/v1/embeddings", {"input": "x" * 16_385}, 413),
        ("/embed", {"inputs": []}, 422),
        ("/embed", {"inputs": ["y"] * 129}, 413),
        ("/embed", "not json", 422),
    ],
    ids=[
        "empty-string", "empty-list", "blank-item", "token-arrays", "no-input", "dimensions",
        "too-many", "too-long", "tei-empty", "tei-too-many", "not-json",
    ],
)
def test_bad_embedding_requests_are_4xx_and_server_keeps_serving(
    embedder: httpx.Client, path: str, body: object, status: int
) -> None:
    if isinstance(body, str):
        response = embedder.post(path, content=body, headers={"content-type": "application/json"})
    else:
        response = embedder.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]
    assert len(embed(embedder, "still here")[0]) == 384


def test_oversized_body_is_refused_before_reading(embedder: httpx.Client) -> None:
    host, port = str(embedder.base_url.host), int(embedder.base_url.port or 80)
    head = (
        "POST /v1/embeddings HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000000000\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413")
    assert b"exceeds the limit" in rest
    assert embedder.get("/health").status_code == 200


# --- sleeping and loading ----------------------------------------------------


def assert_loading_503(response: httpx.Response, model: str) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == f"Model {model} is currently loading"
    assert isinstance(body["estimated_time"], float) and body["estimated_time"] > 0
    assert int(response.headers["retry-after"]) >= 1


def test_sleep_requests_answers_503_then_wakes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_SERVER_SLEEP_REQUESTS", "2")
    monkeypatch.setenv("MODEL_SERVER_ESTIMATED_TIME", "3")
    with served(embeddings.create_app(EmbeddingSettings())) as client:
        asleep = wait_for_state(client, {"asleep"})
        assert asleep.status_code == 503
        for _ in range(2):
            response = client.post("/v1/embeddings", json={"input": "hello"})
            assert_loading_503(response, MINILM)
            assert response.json()["estimated_time"] == 3.0
        assert client.post("/v1/embeddings", json={"input": "hello"}).status_code == 200
        assert client.post("/embed", json={"inputs": "hello"}).status_code == 200
        assert client.get("/health").status_code == 200


def test_never_wake_answers_503_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_SERVER_NEVER_WAKE", "1")
    with served(embeddings.create_app(EmbeddingSettings())) as client:
        for _ in range(4):
            assert_loading_503(client.post("/v1/embeddings", json={"input": "hello"}), MINILM)
            assert_loading_503(client.post("/embed", json={"inputs": "hello"}), MINILM)
        assert client.get("/health").status_code == 503
        assert client.get("/v1/models").status_code == 200


def test_sleep_seconds_counts_from_the_first_model_request() -> None:
    with served(embedding_app(sleep_seconds=1.5, estimated_time=1.0)) as client:
        wait_for_state(client, {"asleep"})
        time.sleep(1.6)  # no model request yet: health checks do not start the clock
        assert client.get("/health").json()["status"] == "asleep"
        first = time.monotonic()
        assert_loading_503(client.post("/v1/embeddings", json={"input": "hello"}), MINILM)
        response = client.post("/embed", json={"inputs": "hello"})
        assert_loading_503(response, MINILM)
        assert response.json()["estimated_time"] == 1.0  # the configured estimate, not the time left
        wait_for_state(client, {"ready"}, timeout=5)
        assert 1.3 <= time.monotonic() - first <= 3.0
        assert len(embed(client, "hello")[0]) == 384


def test_slow_requests_are_held_past_a_client_timeout_without_blocking_the_server() -> None:
    with served(embedding_app(slow_requests=1, slow_seconds=2.0)) as client:
        wait_for_state(client, {"ready"})
        held: list[BaseException] = []

        def slow_call() -> None:
            try:
                client.post("/v1/embeddings", json={"input": "hello"}, timeout=1.0)
            except httpx.ReadTimeout as error:
                held.append(error)

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.3)
        began = time.monotonic()
        assert client.get("/health").status_code == 200  # the held request does not block others
        assert time.monotonic() - began < 0.5
        caller.join()
        assert len(held) == 1
        began = time.monotonic()
        assert len(embed(client, "hello")[0]) == 384  # only the first request was held
        assert time.monotonic() - began < 1.5


def test_model_endpoints_answer_503_while_loading() -> None:
    with served(embedding_app(load_delay_seconds=1.5, estimated_time=2.0)) as client:
        response = client.post("/v1/embeddings", json={"input": "hello"})
        assert_loading_503(response, MINILM)
        assert 1.0 <= response.json()["estimated_time"] <= 3.5
        assert client.get("/health").json()["status"] == "loading"
        assert client.get("/info").json()["dimension"] is None
        wait_for_state(client, {"ready"})
        assert len(embed(client, "hello")[0]) == 384


def test_transcription_server_sleeps_too() -> None:
    with served(transcription_app(sleep_requests=1)) as client:
        wait_for_state(client, {"asleep"})
        assert_loading_503(transcribe(client, tone_wav(0.3)), "tiny.en")
        assert transcribe(client, tone_wav(0.3)).status_code == 200


def test_model_that_fails_to_load_says_why(tmp_path: Path) -> None:
    settings = EmbeddingSettings(model=str(tmp_path / "missing-model"), server=ModelServerSettings())
    with served(embeddings.create_app(settings)) as client:
        health = wait_for_state(client, {"failed"}, timeout=30)
        assert health.status_code == 500
        response = client.post("/v1/embeddings", json={"input": "hello"})
        assert response.status_code == 500
        assert "failed to load" in response.json()["error"]


# --- running as programs -----------------------------------------------------


def test_transcription_server_runs_as_a_program(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "local.models.transcription", "--host", "127.0.0.1", "--port", str(port)]
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=_program_env())
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _wait_until_listening(client, process)
            wait_for_state(client, {"ready"}, timeout=60)
            assert transcribe(client, tone_wav(0.5), response_format="text").status_code == 200
    finally:
        process.terminate()
        process.wait(10)
        log.close()
    logged = (tmp_path / "server.log").read_text()
    assert "Loading model tiny.en" in logged and "Model tiny.en loaded" in logged


def test_embedding_server_program_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "local.models.embeddings", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout


def _program_env() -> dict[str, str]:
    import os

    env = {key: value for key, value in os.environ.items() if not key.startswith(("MODEL_SERVER_", "WHISPER_"))}
    return {**env, "HF_HUB_OFFLINE": "1", "WHISPER_CPU_THREADS": "2"}


def _wait_until_listening(client: httpx.Client, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "server exited early"
        try:
            client.get("/health")
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("server never listened")


# --- pure helpers ------------------------------------------------------------


def test_timestamps_format() -> None:
    assert timestamp(0, ",") == "00:00:00,000"
    assert timestamp(3661.5, ".") == "01:01:01.500"
    assert timestamp(59.9996, ",") == "00:01:00,000"


def test_word_error_rate() -> None:
    assert word_error_rate("ask not what", "Ask not, what") == 0
    assert word_error_rate("ask not what", "ask what") == pytest.approx(1 / 3)
    assert word_error_rate("a b", "a b c d") == 1.0
