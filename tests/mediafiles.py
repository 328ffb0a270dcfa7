"""Real media for tests, made with ffmpeg and espeak-ng (those :mod:`handlers.media.tools` resolves).

Every function writes into the directory it is given and names the file after
its parameters; a file already there is reused, so pointing several tests at
one session-wide directory makes each file once per session: the ``media_dir``
fixture of ``tests/conftest.py`` is that directory.

Files are written to a temporary name and renamed into place, so parallel
test processes never see half a file.

The bad-media corpus (:func:`bad_media`) is what tutors upload by mistake,
each with the words the refusal must contain.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from handlers.media import tools
from handlers.media.probe import probe

JFK_FLAC = Path(__file__).resolve().parents[2] / "shared" / "media" / "jfk.flac"
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
"""What is said in ``jfk.flac`` (11 seconds)."""

LECTURE_SENTENCES = (
    "Welcome to this lecture on thermodynamics.",
    "Today we discuss entropy and the flow of heat.",
    "Energy is conserved in a closed system.",
    "Thank you for listening, and see you next week.",
)

OVERSIZE_LIMIT_BYTES = 32 * 1024
"""A size limit that :func:`oversized_video` exceeds."""


def media_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the whole session, shared by every test module that asks."""
    directory = tmp_path_factory.getbasetemp() / "media"
    directory.mkdir(exist_ok=True)
    return directory


# ------------------------------------------------------------------ good media
def lecture_video(
    directory: Path,
    seconds: float,
    size: str = "1280x720",
    with_audio: bool = True,
    speech_text: str | Sequence[str] | None = None,
    *,
    fps: int = 25,
    pause_seconds: float = 1.0,
    faststart: bool = False,
) -> Path:
    """An MP4 (H.264 + AAC) of the ``testsrc2`` pattern, ``seconds`` long.

    Sound: ``speech_text`` spoken by espeak-ng (a sequence of sentences is
    spoken with ``pause_seconds`` of silence between them; speech shorter than
    the video is padded with silence, longer is cut), else a 440 Hz tone;
    none with ``with_audio=False``. Encoded quickly and loosely (large files,
    the index at the end unless ``faststart``), like a camera's recording.
    """
    name = _name("lecture", seconds, size, with_audio, speech_text, fps, pause_seconds, faststart) + ".mp4"

    def build(target: Path) -> None:
        inputs = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}"]
        if with_audio and speech_text is not None:
            speech = speech_audio(directory, speech_text, pause_seconds=pause_seconds)
            inputs += ["-i", str(speech)]
            audio = ["-map", "0:v", "-map", "1:a", "-af", "apad", "-c:a", "aac", "-b:a", "64k"]
        elif with_audio:
            inputs += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
            audio = ["-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "64k"]
        else:
            audio = ["-map", "0:v"]
        flags = ["-movflags", "+faststart"] if faststart else []
        ffmpeg(
            *inputs, *audio, "-t", f"{seconds:g}",
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p",
            *flags, "-f", "mp4", str(target),
        )

    return _cached(directory / name, build)


def speech_audio(directory: Path, text: str | Sequence[str], *, pause_seconds: float = 1.0) -> Path:
    """A WAV of espeak-ng saying ``text`` (a sequence: sentences separated by ``pause_seconds`` of silence)."""
    name = _name("speech", text, pause_seconds) + ".wav"

    def build(target: Path) -> None:
        if isinstance(text, str):
            command = [tools.espeak(), "-w", str(target), text]
        else:
            pause = f'<break time="{int(pause_seconds * 1000)}ms"/>'
            markup = "<speak>" + pause.join(escape(sentence) for sentence in text) + "</speak>"
            command = [tools.espeak(), "-m", "-w", str(target), markup]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    return _cached(directory / name, build)


def tone_audio(directory: Path, seconds: float) -> Path:
    """A WAV of a steady 440 Hz tone: audio with no silence at all."""
    name = _name("tone", seconds) + ".wav"
    return _cached(
        directory / name,
        lambda target: ffmpeg(
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000", "-t", f"{seconds:g}",
            "-f", "wav", str(target),
        ),
    )


def jfk_video(directory: Path, size: str = "640x360") -> Path | None:
    """``jfk.flac`` (11 s) under a test pattern, as an MP4; ``None`` when the file is absent."""
    if not JFK_FLAC.is_file():
        return None
    name = _name("jfk", size, JFK_FLAC.stat().st_size) + ".mp4"

    def build(target: Path) -> None:
        # -t as well as -shortest: ffmpeg 7's -shortest lets the endless test pattern run 1.5-3 s past the speech
        ffmpeg(
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=10", "-i", str(JFK_FLAC),
            "-map", "0:v", "-map", "1:a", "-shortest", "-t", f"{probe(JFK_FLAC).duration:.3f}",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k",
            "-f", "mp4", str(target),
        )

    return _cached(directory / name, build)


JFK_AUDIO_CODECS = {".mp3": ("libmp3lame", "mp3"), ".m4a": ("aac", "mp4"), ".ogg": ("libopus", "ogg"),
                    ".wav": ("pcm_s16le", "wav")}


def jfk_audio(directory: Path, extension: str) -> Path | None:
    """``jfk.flac`` itself (``.flac``) or re-encoded as an audio recording (``.mp3``, ``.m4a``,
    ``.ogg``, ``.wav``); ``None`` when the file is absent."""
    if not JFK_FLAC.is_file():
        return None
    if extension == ".flac":
        return JFK_FLAC
    codec, container = JFK_AUDIO_CODECS[extension]
    name = _name("jfk-audio", extension, JFK_FLAC.stat().st_size) + extension
    return _cached(
        directory / name,
        lambda target: ffmpeg("-i", str(JFK_FLAC), "-vn", "-c:a", codec, "-f", container, str(target)),
    )


JFK_SOUND_ONLY_CODECS = {".mp4": ("aac", "mp4"), ".webm": ("libopus", "webm")}


def jfk_sound_only_video(directory: Path, extension: str) -> Path | None:
    """``jfk.flac`` in a video container with no video stream (``.mp4``: AAC, like a phone's voice
    memo; ``.webm``: Opus, like a browser's recorder); ``None`` when the file is absent."""
    if not JFK_FLAC.is_file():
        return None
    codec, container = JFK_SOUND_ONLY_CODECS[extension]
    name = _name("jfk-sound-only", extension, JFK_FLAC.stat().st_size) + extension
    return _cached(
        directory / name,
        lambda target: ffmpeg("-i", str(JFK_FLAC), "-vn", "-c:a", codec, "-f", container, str(target)),
    )


def subtitles_only_mp4(directory: Path) -> Path:
    """An MP4 "video" with neither picture nor sound: one text (mov_text) subtitle stream."""
    return _subtitles_only(directory / "subtitles-only.mp4", "mov_text", "mp4")


def subtitles_only(directory: Path) -> Path:
    """A Matroska audio file (``.mka``) with neither sound nor picture: one subtitle stream."""
    return _subtitles_only(directory / "subtitles-only.mka", "copy", "matroska")


def _subtitles_only(target: Path, codec: str, container: str) -> Path:
    """``target``: a two-second SRT subtitle as the file's only stream (``codec`` in ``container``)."""
    srt = target.parent / "two-seconds.srt"
    if not srt.exists():
        srt.write_text("1\n00:00:00,000 --> 00:00:02,000\nhello\n")
    return _cached(target, lambda out: ffmpeg("-i", str(srt), "-c:s", codec, "-f", container, str(out)))


# ------------------------------------------------------------------ bad media
@dataclass(frozen=True)
class BadMedia:
    """A file the service must refuse, and the words its refusal must contain."""

    name: str
    path: Path
    reason_words: tuple[str, ...]
    max_size_bytes: int | None = None
    """The size limit to apply (only for the oversized file); ``None``: the default."""


def empty_file(directory: Path) -> Path:
    return _cached(directory / "empty.mp4", lambda target: target.write_bytes(b""))


def truncated_mp4(directory: Path) -> Path:
    """The first 40% of an MP4 whose index comes last: an interrupted upload of a camera file."""
    whole = lecture_video(directory, 2, size="320x240", fps=10)
    return _cached(directory / "truncated.mp4", lambda target: _copy_head(whole, target, 0.4))


def truncated_faststart_mp4(directory: Path) -> Path:
    """The first 60% of an MP4 whose index comes first: ffprobe reads it, the media is missing."""
    whole = lecture_video(directory, 2, size="320x240", fps=10, faststart=True)
    return _cached(directory / "truncated-faststart.mp4", lambda target: _copy_head(whole, target, 0.6))


def png_as_mp4(directory: Path) -> Path:
    """A slide exported as PNG and renamed ``.mp4``."""
    return _cached(
        directory / "slide.mp4",
        lambda target: ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=size=640x360", "-frames:v", "1", "-f", "image2", "-c:v", "png",
            str(target),
        ),
    )


def audio_only(directory: Path) -> Path:
    """A voice memo: AAC audio in an MP4 container, no picture."""
    return _cached(
        directory / "voice-memo.m4a",
        lambda target: ffmpeg(
            "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000", "-t", "2",
            "-c:a", "aac", "-b:a", "32k", "-f", "mp4", str(target),
        ),
    )


def video_without_audio(directory: Path) -> Path:
    return lecture_video(directory, 2, size="320x240", with_audio=False, fps=10)


def short_clip(directory: Path) -> Path:
    """A 0.5-second clip with sound."""
    return lecture_video(directory, 0.5, size="320x240", fps=10)


def oversized_video(directory: Path) -> Path:
    """A valid video bigger than :data:`OVERSIZE_LIMIT_BYTES`."""
    path = lecture_video(directory, 2, size="640x360", fps=10)
    assert path.stat().st_size > OVERSIZE_LIMIT_BYTES, "the oversized video came out too small"
    return path


def bad_media(directory: Path) -> list[BadMedia]:
    """The whole corpus, each file with the words its refusal must contain."""
    return [
        BadMedia("empty", empty_file(directory), ("empty",)),
        BadMedia("truncated", truncated_mp4(directory), ("incomplete",)),
        BadMedia("truncated-faststart", truncated_faststart_mp4(directory), ("incomplete",)),
        BadMedia("png-renamed", png_as_mp4(directory), ("not a video", "PNG image")),
        BadMedia("audio-only", audio_only(directory), ("no picture",)),
        BadMedia("no-audio", video_without_audio(directory), ("no sound track",)),
        BadMedia("half-second", short_clip(directory), ("only 0.5 seconds long",)),
        BadMedia("oversized", oversized_video(directory), ("the limit is 32 KB",), OVERSIZE_LIMIT_BYTES),
    ]


# ------------------------------------------------------------------ inspecting results
def top_level_boxes(path: Path) -> list[str]:
    """The top-level box types of an MP4, in file order (``moov`` before ``mdat`` = faststart)."""
    boxes: list[str] = []
    size = path.stat().st_size
    with path.open("rb") as handle:
        offset = 0
        while offset + 8 <= size:
            handle.seek(offset)
            header = handle.read(16)
            box_size, box_type = struct.unpack(">I4s", header[:8])
            if box_size == 1:
                box_size = struct.unpack(">Q", header[8:16])[0]
            elif box_size == 0:
                box_size = size - offset
            boxes.append(box_type.decode("latin-1"))
            if box_size < 8:
                break
            offset += box_size
    return boxes


def opus_head(path: Path) -> tuple[int, int]:
    """``(channels, input sample rate)`` from an Ogg Opus file's ``OpusHead`` header.

    ffprobe reports every Opus stream as 48 kHz (Opus always decodes at
    48 kHz); the rate the audio was encoded from is recorded here.
    """
    with path.open("rb") as handle:
        head = handle.read(4096)
    at = head.index(b"OpusHead")
    channels = head[at + 9]
    (rate,) = struct.unpack("<I", head[at + 12 : at + 16])
    return channels, rate


# ------------------------------------------------------------------ helpers
def ffmpeg(*arguments: str) -> None:
    """Run ffmpeg quietly, failing loudly."""
    subprocess.run(
        [tools.ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *arguments],
        check=True, capture_output=True, timeout=120,
    )


def _name(kind: str, *parameters: object) -> str:
    digest = hashlib.sha1(repr(parameters).encode()).hexdigest()[:10]
    return f"{kind}-{digest}"


def _cached(target: Path, build: Callable[[Path], object]) -> Path:
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".making-", suffix=target.suffix)
    os.close(fd)
    try:
        build(Path(temp))
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    finally:
        Path(temp).unlink(missing_ok=True)
    return target


def _copy_head(source: Path, target: Path, fraction: float) -> None:
    with source.open("rb") as inp, target.open("wb") as out:
        out.write(inp.read(int(source.stat().st_size * fraction)))

