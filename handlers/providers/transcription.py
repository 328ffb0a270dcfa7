"""Transcription on an OpenAI-compatible Whisper server (``POST /v1/audio/transcriptions``).

:class:`WhisperClient` speaks the HTTP API (speaches, whisper.cpp's server,
LocalAI, hosted APIs and ``local.models.transcription`` share it);
:class:`WhisperTranscriber` is the transcribe step: it cuts the audio into
pieces (at silences, by the splitter it is given), transcribes them one by
one and keeps each finished piece's transcript in a work folder per queue, so
the attempt after a transient failure resumes at the piece that failed.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from handlers.errors import PermanentError, ProviderError, StepCancelled, TransientError
from handlers.http_errors import RemoteServer, error_for_exception, raise_for_response
from handlers.media import AudioPiece
from handlers.partial_transcripts import DEFAULT_EVERY_SECONDS, PartialTranscriptWriter, partial_key
from handlers.remote import RemoteClient
from handlers.steps import StepContext, StepJob, StepResult
from handlers.storage import ArtifactNotFound, Storage, artifact_key
from handlers.transcripts import WRITERS, Segment, Transcript, encoded, merge

logger = logging.getLogger(__name__)

URL_ENV = "WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL"
TOKEN_ENV = "WHISPER_API_KEY"

Splitter = Callable[[Path, Path], list[AudioPiece]]
"""``(audio_path, workdir) -> pieces``: cuts the audio into pieces (files under ``workdir``)."""

SegmentProgress = Callable[[float], None]
"""Called with the end (seconds from the audio's start) of each segment as the server decodes it."""

SegmentText = Callable[[list[Segment]], None]
"""Called with the segments (times from the audio's start, text) that arrived together as the server streams."""

KNOWN_EVENTS = frozenset({"transcript.text.delta", "transcript.text.segment", "transcript.text.done", "error"})

STREAM_REFUSED = frozenset({400, 404, 415, 422})
"""Answers to ``stream=true`` that may mean "no streaming here": the request is sent again without it."""


def api_base(url: str) -> str:
    """The server's root, whether the URL was given as the root, ``.../v1`` or the full endpoint."""
    base = url.strip().rstrip("/")
    for suffix in ("/v1/audio/transcriptions", "/audio/transcriptions", "/v1"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


class WhisperClient(RemoteClient):
    """A client of one OpenAI-compatible transcription server.

    Every failure is raised as a :class:`ProviderError` classified by
    :mod:`handlers.http_errors` (sleeping/5xx/timeouts transient, 4xx permanent).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str = "whisper-1",
        language: str | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        name: str = "Whisper server",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = api_base(base_url)
        self.model = model
        self.language = language
        self._connect(RemoteServer(name, self.base_url, URL_ENV, TOKEN_ENV), api_key=api_key, timeout=timeout,
                      connect_timeout=connect_timeout, transport=transport)
        self._reported_model: str | None = None
        self.streams: bool | None = True
        """True: ask for ``stream=true``; None: the last such request was refused (trying without);
        False: the server does not stream, ask for whole answers."""

    @property
    def host(self) -> str:
        return self.server.host

    def transcribe(
        self, audio: Path, on_segment: SegmentProgress | None = None, *, language: str | None = None,
        on_text: SegmentText | None = None,
    ) -> Transcript:
        """The transcript of the audio file, segment timestamps relative to its start.

        ``on_segment`` hears each segment's end as it is decoded when the server streams, ``on_text`` the
        segments themselves (those that arrived together, in one call). ``language``
        (ISO 639-1) names the speech's language; without it (and without the client's own ``language``)
        the server detects it.
        """
        form = self._form(language or self.language)
        if self.streams is not False:
            transcript = self._transcribe_streamed(audio, on_segment or (lambda end: None), form, on_text)
            if transcript is not None:
                return transcript
        with self._upload(audio) as files:
            response = self._call("POST", "/v1/audio/transcriptions", files=files, data=form)
        transcript = self._transcript(self._body(response), response.status_code, response.text)
        if self.streams is None:
            self.streams = False  # it refused stream=true but transcribes: don't ask it to stream again
            logger.info("%s does not stream transcriptions; asking for whole answers from now on", self.server)
        return transcript

    def _transcribe_streamed(
        self, audio: Path, on_segment: SegmentProgress, form: dict[str, Any], on_text: SegmentText | None = None
    ) -> Transcript | None:
        """The transcript, read from server-sent events as they come; None if the server refused to stream."""
        try:
            with self._upload(audio) as files, self._http.stream(
                "POST", "/v1/audio/transcriptions", files=files, data={**form, "stream": "true"}
            ) as response:
                if response.status_code in STREAM_REFUSED:
                    response.read()
                    logger.info("%s answered %d to stream=true; asking again without it", self.server,
                                response.status_code)
                    self.streams = None
                    return None
                if not (response.is_success and "text/event-stream" in response.headers.get("content-type", "")):
                    response.read()  # an error, or it ignored stream=true and answered the whole transcript
                    raise_for_response(response, self.server)
                    return self._transcript(self._body(response), response.status_code, response.text)
                done = self._read_events(response, on_segment, on_text)
                if done is None:
                    logger.info("%s streams events of another kind; asking again without stream", self.server)
                    self.streams = None
                    return None
                return self._transcript(done, response.status_code, json.dumps(done))
        except httpx.HTTPError as error:
            raise error_for_exception(error, self.server) from error

    def _read_events(
        self, response: httpx.Response, on_segment: SegmentProgress, on_text: SegmentText | None = None
    ) -> dict[str, Any] | None:
        """The ``transcript.text.done`` event's body, reporting ``transcript.text.segment`` ends on the way.

        Segments that arrive together (a batch decoded at once) are reported once, with the last end, so
        a throttled progress report is not spent on the first of them. None when the stream ended without
        a single OpenAI transcription event (another server's own streaming dialect): the caller asks again
        without streaming.
        """
        data: list[str] = []
        pending = ""
        understood = False
        for text in response.iter_text():
            *lines, pending = (pending + text).split("\n")
            heard: float | None = None
            arrived: list[Segment] = []
            for line in (line.rstrip("\r") for line in lines):
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                    continue
                if line or not data:
                    continue  # comments, event names, ids; or a blank line between nothing
                event, data = _event(data), []
                kind = event.get("type") if isinstance(event, dict) else None
                understood = understood or kind in KNOWN_EVENTS
                if kind == "transcript.text.segment" and isinstance(event.get("end"), (int, float)):
                    heard = float(event["end"])
                    start = event.get("start")
                    start = float(start) if isinstance(start, (int, float)) else heard
                    arrived.append(Segment(min(start, heard), heard, str(event.get("text") or "").strip()))
                elif kind == "transcript.text.done":
                    return event
                elif kind == "error":
                    raise TransientError(f"{self.server} failed while transcribing: {_clip(event.get('error'))}")
            if heard is not None:
                on_segment(heard)
            if arrived and on_text is not None:
                on_text(arrived)
        if not understood:
            return None
        raise TransientError(f"{self.server} ended its stream before the transcript was complete")

    def model_name(self) -> str:
        """The model the server says it runs (``GET /v1/models``), else the one we ask for."""
        if self._reported_model is None:
            try:
                response = raise_for_response(self._http.get("/v1/models", timeout=10.0), self.server)
                models = response.json().get("data") or []
                self._reported_model = str(models[0]["id"]) if models else self.model
            except (httpx.HTTPError, TransientError):
                return self.model  # ask again next time
            except (ProviderError, ValueError, KeyError, TypeError, AttributeError):
                self._reported_model = self.model  # the server does not say; don't ask again
        return self._reported_model

    # ------------------------------------------------------------------ helpers
    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise error_for_exception(error, self.server) from error
        return raise_for_response(response, self.server)

    def _form(self, language: str | None) -> dict[str, Any]:
        form: dict[str, Any] = {
            "model": self.model,
            "response_format": "verbose_json",
            "timestamp_granularities[]": "segment",
        }
        if language:
            form["language"] = language
        return form

    @contextmanager
    def _upload(self, audio: Path) -> Iterator[dict[str, Any]]:
        kind = mimetypes.guess_type(audio.name)[0] or "application/octet-stream"
        with audio.open("rb") as handle:
            yield {"file": (audio.name, handle, kind)}

    @staticmethod
    def _body(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None

    def _transcript(self, body: Any, status: int, text: str) -> Transcript:
        if not isinstance(body, dict) or not ("segments" in body or "text" in body):
            raise TransientError(f"{self.server} answered {status} without a transcript ({text[:120]!r})")
        model = body.get("model") or self.model_name()
        try:
            transcript = Transcript.from_dict({**body, "model": model})
        except (KeyError, TypeError, ValueError) as error:
            raise TransientError(f"{self.server} answered a malformed transcript ({error!r})") from None
        if not transcript.segments and str(body.get("text") or "").strip():
            # A server that ignores verbose_json: one segment over the whole piece.
            end = transcript.duration
            segment = Segment(0.0, end, str(body["text"]).strip())
            transcript = Transcript((segment,), transcript.language, end, model, transcript.language_probability)
        return transcript


def _event(data: list[str]) -> Any:
    try:
        return json.loads("\n".join(data))
    except ValueError:
        return None


def _clip(value: Any, limit: int = 300) -> str:
    text = " ".join(str(value or "no details given").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class WhisperTranscriber:
    """The transcribe step on a :class:`WhisperClient`.

    ``cache_dir`` holds one folder per queue (``<cache_dir>/<queue_id>/``) with
    the downloaded audio, its pieces and ``piece-<n>.json`` for every piece
    already transcribed; it survives a transient failure (the next attempt
    resumes there) and is removed once the step succeeds or fails for good.
    Folders left behind by queues that never came back (failed for good after
    their last retry) are pruned after ``cache_max_age_seconds``.
    ``wake_next`` is called (in the background, errors ignored) when the step
    starts, to wake the next step's server.

    The queue's ``language`` option (ISO 639-1, set at upload or from the
    tutor's default) is sent with every piece; without it the server detects
    the language on the first piece, and that language is sent with the rest,
    so one lecture is transcribed in one language by one model.

    While it runs, the segments heard so far are kept in the queue's storage
    folder (:mod:`handlers.partial_transcripts`, at most one write per
    ``partial_every_seconds`` and one at the end of each streamed piece), for
    the page to show the transcript growing; the final transcript replaces it.
    """

    name = "whisper-server"

    def __init__(
        self,
        client: WhisperClient,
        storage: Storage,
        splitter: Splitter,
        cache_dir: Path,
        *,
        wake_next: Callable[[], object] | None = None,
        cache_max_age_seconds: float = 7 * 24 * 3600,
        partial_every_seconds: float = DEFAULT_EVERY_SECONDS,
    ) -> None:
        self.client = client
        self.partial_every_seconds = partial_every_seconds
        self.cache_max_age_seconds = cache_max_age_seconds
        self.storage = storage
        self.splitter = splitter
        self.cache_dir = Path(cache_dir)
        self.wake_next = wake_next

    def ping(self) -> bool:
        return self.client.ping()

    def prune_cache(self) -> None:
        """Remove work folders untouched for ``cache_max_age_seconds`` (queues that failed or vanished)."""
        if not self.cache_dir.is_dir():
            return
        horizon = time.time() - self.cache_max_age_seconds
        for folder in self.cache_dir.iterdir():
            try:
                if folder.is_dir() and folder.stat().st_mtime < horizon:
                    logger.info("removing the stale transcription work folder %s", folder)
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:  # another replica removed it first
                continue

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        wake_in_background(self.wake_next)
        self.prune_cache()
        workdir = self.cache_dir / job.queue_id
        partial = PartialTranscriptWriter(self.storage, partial_key(job.owner_id, job.queue_id),
                                          every_seconds=self.partial_every_seconds,
                                          allowed=lambda: not context.cancelled.is_set())
        try:
            transcript = self._transcribe(job, context, workdir, partial)
            context.check()  # a queue cancelled (or lecture deleted) during the last piece stores no transcript
            outputs = store_transcript(self.storage, job, transcript)
        except TransientError:
            raise  # keep the finished pieces (and the transcript so far) for the next attempt
        except (ProviderError, StepCancelled):
            shutil.rmtree(workdir, ignore_errors=True)
            partial.clear()
            raise
        partial.clear()  # after the final transcript is stored: a reader always finds one of them
        shutil.rmtree(workdir, ignore_errors=True)
        return StepResult(outputs=outputs, provider=f"{self.name}@{self.client.host}", model=transcript.model)

    # ------------------------------------------------------------------ phases
    def _transcribe(
        self, job: StepJob, context: StepContext, workdir: Path, partial: PartialTranscriptWriter | None = None
    ) -> Transcript:
        audio = self._download(job, workdir)
        context.check()
        (workdir / "pieces").mkdir(parents=True, exist_ok=True)
        pieces = self.splitter(audio, workdir / "pieces")
        total = sum(max(p.end - p.start, 0.0) for p in pieces) or 1.0
        parts: list[tuple[float, Transcript]] = []
        done = 0.0
        language = language_hint(job.options)
        for number, piece in enumerate(pieces, start=1):
            context.check()
            length = max(piece.end - piece.start, 0.0)

            def on_segment(end: float, before: float = done, length: float = length) -> None:
                heard = before + min(max(end, 0.0), length)
                context.report(98 * heard / total, f"transcribed {_clock(heard)} of {_clock(total)}")

            live: list[Segment] = []

            def so_far(start: float = piece.start, live: list[Segment] = live) -> Transcript:
                return merge([*parts, (start, Transcript(tuple(live), language))])

            def on_text(segments: list[Segment], live: list[Segment] = live) -> None:
                live.extend(segments)
                if partial is not None:
                    partial.offer(so_far)

            transcript = self._piece(workdir, number, piece, len(pieces), on_segment, language, on_text)
            parts.append((piece.start, transcript))
            if partial is not None:  # a streamed piece's last segments are written now, not one piece later
                partial.offer(lambda: merge(parts), force=bool(live))
            if language is None and transcript.segments and transcript.language:
                language = transcript.language  # detected on this piece: the rest are in it too
            done += length
            context.report(98 * done / total, f"transcribed piece {number} of {len(pieces)}")
        duration = max((p.end for p in pieces), default=0.0)
        return merge(parts, duration=duration)

    def _download(self, job: StepJob, workdir: Path) -> Path:
        key = (job.inputs.get("audio-convert") or {}).get("audio")
        if not key:
            raise PermanentError("there is no audio to transcribe: the audio-convert step recorded none")
        target = workdir / ("audio" + Path(key).suffix)
        try:
            size = self.storage.size(key)
            if not (target.is_file() and target.stat().st_size == size):
                self.storage.download(key, target)
        except ArtifactNotFound:
            raise PermanentError(f"the audio of this video ({key}) is missing from storage") from None
        return target

    def _piece(
        self, workdir: Path, number: int, piece: AudioPiece, count: int, on_segment: SegmentProgress,
        language: str | None, on_text: SegmentText | None = None,
    ) -> Transcript:
        cached = workdir / f"piece-{number}.json"
        if cached.is_file():
            saved = json.loads(cached.read_text())
            if abs(saved["start"] - piece.start) < 0.01 and abs(saved["end"] - piece.end) < 0.01:
                logger.info("piece %d of %d already transcribed; reusing it", number, count)
                return Transcript.from_dict(saved["transcript"])
        logger.info("transcribing piece %d of %d (%.1f-%.1f s, language %s) on %s", number, count, piece.start,
                    piece.end, language or "to detect", self.client.server)
        transcript = self.client.transcribe(piece.path, on_segment, language=language, on_text=on_text)
        temp = cached.with_suffix(".tmp")
        temp.write_text(json.dumps({"start": piece.start, "end": piece.end, "transcript": transcript.to_dict()}))
        os.replace(temp, cached)
        return transcript


def store_transcript(storage: Storage, job: StepJob, transcript: Transcript) -> dict[str, Any]:
    """Write ``transcript`` in every format under the queue's artifact keys; the step's outputs."""
    outputs: dict[str, Any] = {}
    for fmt, writer in WRITERS.items():
        name = f"transcript_{fmt}"
        key = artifact_key(job.owner_id, job.queue_id, name)
        storage.put_stream(key, encoded(writer(transcript)))
        outputs[name] = key
    outputs.update(
        language=transcript.language,
        language_probability=transcript.language_probability,
        model=transcript.model,
        duration_seconds=round(transcript.duration, 3),
        segments=len(transcript.segments),
    )
    return outputs


def language_hint(options: dict[str, Any]) -> str | None:
    """The queue's ``language`` option as an ISO 639-1 code; None (or ``auto``) lets the server detect it."""
    value = str(options.get("language") or "").strip().lower()
    return None if value in ("", "auto") else value


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def wake_in_background(wake: Callable[[], object] | None) -> None:
    """Call ``wake`` on a daemon thread, ignoring whatever it raises."""
    if wake is None:
        return

    def quietly() -> None:
        try:
            wake()
        except Exception:  # noqa: BLE001 - waking is best effort
            logger.debug("waking the next server failed", exc_info=True)

    threading.Thread(target=quietly, name="wake-next-server", daemon=True).start()
