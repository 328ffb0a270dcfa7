"""ffmpeg as a child process: compressing, extracting speech audio, cutting at silences.

Every run goes through :func:`run_ffmpeg`, which reads ffmpeg's own progress
output (``-progress pipe:1 -nostats``), turns ``out_time_us`` into a
percentage of the known duration for :meth:`StepContext.report`, registers the
child with :meth:`StepContext.watch_process` (so a cancelled queue kills it at
once) and checks :meth:`StepContext.check` between progress lines. A failed
run becomes a :class:`MediaError` carrying ffmpeg's last useful error lines.
ffmpeg streams from file to file: nothing here holds a whole video in memory.
"""

from __future__ import annotations

import collections
import ctypes
import signal
import logging
import re
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from handlers.errors import MediaError, PermanentError, TransientError
from handlers.media import AudioPiece, tools
from handlers.media.probe import probe
from handlers.steps import StepContext

logger = logging.getLogger(__name__)

SPEECH_SAMPLE_RATE = 16000
"""Whisper works on 16 kHz mono; sending more is wasted bytes."""

_ADDRESS = re.compile(r"^\[(\w+) @ 0x[0-9a-f]+\] ")
_SILENCE_START = re.compile(r"silence_start: (-?[0-9.]+)")
_SILENCE_END = re.compile(r"silence_end: (-?[0-9.]+)")
_NOISE_LINES = ("Conversion failed!", "Exiting normally")
_WRAP_UP = re.compile(
    r"^(Error parsing options for |Error opening output files?|Failed to set value '.*' for option "
    r"|To ignore this, add a trailing )"
)
"""Lines newer ffmpeg (6 and later) adds after the real reason, which say nothing of their own."""

Span = tuple[float, float]


@dataclass(frozen=True)
class Silence:
    """A stretch of silence in an audio file, in seconds from its start."""

    start: float
    end: float

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2


# ------------------------------------------------------------------ running
def die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """Ask Linux to kill this child when the process (thread) that started it dies, even by SIGKILL,
    so a crashed handler leaves no ffmpeg running (``PR_SET_PDEATHSIG``)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def run_ffmpeg(
    arguments: Sequence[str],
    context: StepContext | None = None,
    *,
    duration: float | None = None,
    span: Span = (0.0, 100.0),
    detail: str | None = None,
    action: str = "process the video",
    loglevel: str = "error",
    on_log_line: Callable[[str], None] | None = None,
    ffmpeg: str | None = None,
) -> None:
    """Run ``ffmpeg <arguments>`` to completion, reporting progress and obeying cancellation.

    ``duration`` (seconds of media ffmpeg will write) turns ffmpeg's
    ``out_time_us`` into a percentage, scaled into ``span`` of the step's
    progress. ``on_log_line`` receives every line ffmpeg logs at ``loglevel``
    (from another thread). Raises :class:`StepCancelled` when the queue was
    cancelled (the child is dead by then), :class:`MediaError` when ffmpeg
    fails ("Could not <action>: <its last error lines>"),
    :class:`PermanentError` when ffmpeg is not installed. ``ffmpeg`` defaults
    to the one :mod:`handlers.media.tools` resolves.
    """
    command = [
        ffmpeg or tools.ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", loglevel,
        "-progress", "pipe:1", "-nostats", *arguments,
    ]
    logger.debug("running %s", " ".join(command))
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, errors="replace", bufsize=1, preexec_fn=die_with_parent,
        )
    except FileNotFoundError:
        raise PermanentError("ffmpeg is not installed") from None
    log_tail: collections.deque[str] = collections.deque(maxlen=40)
    reader = threading.Thread(target=_read_log, args=(process, log_tail, on_log_line), daemon=True)
    reader.start()
    try:
        if context is not None:
            context.watch_process(process)
        _follow_progress(process, context, duration, span, detail)
        returncode = process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        assert process.stdout is not None
        process.stdout.close()
    if context is not None:
        context.check()
    if returncode != 0:
        raise _failure(action, returncode, list(log_tail))


def _follow_progress(
    process: subprocess.Popen[str],
    context: StepContext | None,
    duration: float | None,
    span: Span,
    detail: str | None,
) -> None:
    assert process.stdout is not None
    low, high = span
    for line in process.stdout:
        if context is None:
            continue
        context.check()
        key, _, value = line.strip().partition("=")
        if key in ("out_time_us", "out_time_ms") and duration and value.lstrip("-").isdigit():
            # ffmpeg writes microseconds under both names (out_time_ms is a historical misnomer)
            fraction = min(1.0, max(0.0, int(value) / 1_000_000 / duration))
            context.report(low + (high - low) * fraction, detail)
        elif key == "progress" and value == "end" and duration:
            context.report(high, detail)


def _read_log(
    process: subprocess.Popen[str],
    tail: collections.deque[str],
    on_line: Callable[[str], None] | None,
) -> None:
    assert process.stderr is not None
    with process.stderr:
        for raw in process.stderr:
            line = raw.rstrip()
            if not line:
                continue
            tail.append(line)
            if on_line is not None:
                on_line(line)


def _failure(action: str, returncode: int, lines: list[str]) -> Exception:
    useful = [
        _ADDRESS.sub(r"[\1] ", line) for line in lines
        if line.strip() not in _NOISE_LINES and not _WRAP_UP.match(line.strip())
    ]
    last = list(dict.fromkeys(useful))[-3:]
    summary = "; ".join(last) or f"ffmpeg exited with status {returncode}"
    if returncode < 0:
        return TransientError(f"ffmpeg was stopped by signal {-returncode} while trying to {action}")
    if any("No space left on device" in line for line in lines):
        return TransientError(f"Could not {action}: the server ran out of disk space")
    return MediaError(f"Could not {action}: {summary}")


# ------------------------------------------------------------------ the work
def compress(
    source: Path,
    target: Path,
    context: StepContext | None,
    duration: float | None,
    *,
    max_height: int = 720,
    crf: int = 28,
    preset: str = "veryfast",
    max_bitrate: str | None = "2M",
    max_fps: float | None = 30,
    audio_bitrate: str = "96k",
    span: Span = (0.0, 100.0),
    ffmpeg: str | None = None,
) -> None:
    """Re-encode ``source`` into a compact, streamable MP4 at ``target``.

    Video: H.264 (libx264, yuv420p, plays everywhere), the shorter side capped
    at ``max_height`` (720p for landscape video) keeping the aspect ratio with
    even dimensions, never upscaled, frame rate capped at ``max_fps``. Audio:
    the first track as AAC at ``audio_bitrate``. ``+faststart`` puts the index
    (moov) before the media so playback starts before the download ends.

    Why these defaults, for lectures: rate control is quality-based (CRF), so a
    static slide costs almost nothing and a moving camera gets the bits it
    needs. CRF 28 (x264's default is 23; every +6 halves the bitrate) keeps
    slide text and faces clean at 720p. No ``-tune stillimage``: recordings mix
    camera footage and slides, and that tune smears motion. ``max_bitrate``
    (with a buffer of twice that) caps the rare noisy camera recording that
    CRF alone would let grow. ``veryfast`` is ~3× faster than ``medium`` for
    a few percent more bytes, the right trade for CPU-bound servers.
    """
    scale = (
        f"scale='if(gte(iw,ih),-2,min(iw,{max_height}))':'if(gte(iw,ih),min(ih,{max_height}),-2)',"
        "scale=trunc(iw/2)*2:trunc(ih/2)*2,format=yuv420p"
    )
    arguments = [
        "-y", "-i", str(source),
        "-map", "0:v:0", "-map", "0:a:0?", "-sn", "-dn",
        "-vf", scale,
        "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
    ]
    if max_bitrate:
        arguments += ["-maxrate", max_bitrate, "-bufsize", _double(max_bitrate)]
    if max_fps:
        arguments += ["-fpsmax", f"{max_fps:g}"]
    arguments += [
        "-c:a", "aac", "-b:a", audio_bitrate,
        "-movflags", "+faststart", "-f", "mp4", str(target),
    ]
    run_ffmpeg(
        arguments, context, duration=duration, span=span, detail="compressing",
        action="compress the video", ffmpeg=ffmpeg,
    )


def extract_audio(
    source: Path,
    target: Path,
    context: StepContext | None,
    duration: float | None,
    *,
    bitrate: str = "24k",
    span: Span = (0.0, 100.0),
    ffmpeg: str | None = None,
) -> None:
    """Write the first audio track of ``source`` as mono 16 kHz Opus in Ogg.

    Opus in VoIP mode at 24 kbit/s is transparent for speech recognition and
    about 11 MB an hour (so a 10-minute piece is ~2 MB, far below the 25 MB
    request limit of hosted Whisper APIs); ``.ogg`` is accepted by
    OpenAI-compatible servers, faster-whisper and whisper.cpp alike.
    """
    arguments = [
        "-y", "-i", str(source),
        "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-ac", "1", "-ar", str(SPEECH_SAMPLE_RATE),
        "-c:a", "libopus", "-b:a", bitrate, "-application", "voip",
        "-f", "ogg", str(target),
    ]
    run_ffmpeg(
        arguments, context, duration=duration, span=span, detail="extracting audio",
        action="extract the sound track", ffmpeg=ffmpeg,
    )


def detect_silences(
    audio: Path,
    context: StepContext | None = None,
    *,
    noise_db: float = -35.0,
    min_silence_seconds: float = 0.4,
    duration: float | None = None,
    span: Span = (0.0, 100.0),
    ffmpeg: str | None = None,
) -> list[Silence]:
    """The silences in ``audio``: stretches quieter than ``noise_db`` for at least ``min_silence_seconds``.

    Uses ffmpeg's ``silencedetect`` filter, which decodes the audio once
    (an hour of 16 kHz speech takes a few seconds). A silence that runs to
    the end of the file ends at ``duration`` (probed if not given).
    """
    starts: list[float] = []
    ends: list[float] = []

    def collect(line: str) -> None:
        if match := _SILENCE_START.search(line):
            starts.append(max(0.0, float(match.group(1))))
        elif match := _SILENCE_END.search(line):
            ends.append(float(match.group(1)))

    arguments = [
        "-i", str(audio), "-map", "0:a:0", "-vn",
        "-af", f"silencedetect=noise={noise_db:g}dB:duration={min_silence_seconds:g}",
        "-f", "null", "-",
    ]
    run_ffmpeg(
        arguments, context, duration=duration, span=span, detail="finding pauses",
        action="read the sound track", loglevel="info", on_log_line=collect, ffmpeg=ffmpeg,
    )
    if len(starts) > len(ends):
        total = duration if duration is not None else probe(audio).duration
        ends.append(total if total is not None else starts[-1])
    return [Silence(start, end) for start, end in zip(starts, ends, strict=True) if end > start]


def plan_cuts(
    duration: float,
    silences: Sequence[Silence],
    max_piece_seconds: float,
    min_piece_seconds: float | None = None,
) -> list[float]:
    """Where to cut ``duration`` seconds of audio so no piece exceeds ``max_piece_seconds``.

    Each cut falls in the middle of the last silence before the limit, so
    words are never split; a silence that would leave a piece shorter than
    ``min_piece_seconds`` (default a quarter of the maximum) is passed over;
    with no usable silence the cut is hard, at the limit. Audio at most 2 %
    (10 s at most) over the limit stays whole: a 600.02 s lecture is not worth
    a 0.02 s second piece. Returns the cut times, ascending, excluding 0 and
    ``duration``.
    """
    if max_piece_seconds <= 0:
        raise ValueError("max_piece_seconds must be positive")
    shortest = max_piece_seconds / 4 if min_piece_seconds is None else min_piece_seconds
    middles = sorted(s.middle for s in silences)
    cuts: list[float] = []
    position = 0.0
    slack = min(10.0, 0.02 * max_piece_seconds)
    while duration - position > max_piece_seconds + slack:
        limit = position + max_piece_seconds
        usable = [m for m in middles if position + shortest < m <= limit]
        position = usable[-1] if usable else limit
        cuts.append(position)
    return cuts


def split_at_silences(
    audio: Path,
    workdir: Path,
    max_piece_seconds: float = 600.0,
    *,
    context: StepContext | None = None,
    duration: float | None = None,
    silences: Sequence[Silence] | None = None,
    noise_db: float = -35.0,
    min_silence_seconds: float = 0.4,
    min_piece_seconds: float | None = None,
    span: Span = (0.0, 100.0),
    ffmpeg: str | None = None,
) -> list[AudioPiece]:
    """Cut ``audio`` into pieces of at most ``max_piece_seconds``, at silences (see :func:`plan_cuts`).

    The pieces cover the whole audio without gaps: each piece's ``start`` is
    the previous one's ``end``. Audio that already fits is returned as one
    piece whose path is ``audio`` itself (nothing is copied). Pieces are
    written to ``workdir`` as Ogg Opus: copied packet for packet when the
    input is Ogg Opus (cuts land on the 20 ms packet grid), re-encoded as
    mono 16 kHz otherwise. Finding the silences and cutting report progress
    within ``span``, half each.
    """
    info = probe(audio) if duration is None else None
    total = duration if duration is not None else (info.duration if info else None)
    if total is None:
        raise MediaError("The sound track's length cannot be read, so it cannot be cut into pieces.")
    if total <= max_piece_seconds or not plan_cuts(total, (), max_piece_seconds, min_piece_seconds):
        # fits, or within plan_cuts' slack (a 600.05 s sound track with 600 s pieces): no cut, one piece
        return [AudioPiece(Path(audio), 0.0, total)]
    middle = (span[0] + span[1]) / 2
    if silences is None:
        silences = detect_silences(
            audio, context, noise_db=noise_db, min_silence_seconds=min_silence_seconds,
            duration=total, span=(span[0], middle), ffmpeg=ffmpeg,
        )
    cuts = plan_cuts(total, silences, max_piece_seconds, min_piece_seconds)
    info = info or probe(audio)
    copy = info.audio_codec == "opus" and info.format_name == "ogg"
    codec = ["-c:a", "copy"] if copy else [
        "-ac", "1", "-ar", str(SPEECH_SAMPLE_RATE), "-c:a", "libopus", "-b:a", "24k", "-application", "voip",
    ]
    workdir.mkdir(parents=True, exist_ok=True)
    pattern = workdir / "piece-%04d.ogg"
    arguments = [
        "-y", "-i", str(audio), "-map", "0:a:0", "-vn", *codec,
        "-f", "segment", "-segment_format", "ogg", "-reset_timestamps", "1",
        "-segment_times", ",".join(f"{cut:.3f}" for cut in cuts), str(pattern),
    ]
    run_ffmpeg(
        arguments, context, duration=total, span=(middle, span[1]), detail="cutting audio",
        action="cut the sound track into pieces", ffmpeg=ffmpeg,
    )
    bounds = [0.0, *cuts, total]
    pieces = [
        AudioPiece(workdir / (pattern.name % index), start, end)
        for index, (start, end) in enumerate(zip(bounds, bounds[1:]))
    ]
    missing = [str(p.path) for p in pieces if not p.path.is_file()]
    if missing:
        raise MediaError(f"Could not cut the sound track into pieces: {', '.join(missing)} were not written")
    return pieces


def _double(rate: str) -> str:
    """``"2M"`` → ``"4M"``: the rate-control buffer for a maximum bitrate."""
    match = re.fullmatch(r"([0-9.]+)([kKmM]?)", rate)
    if not match:
        return rate
    return f"{float(match.group(1)) * 2:g}{match.group(2)}"

