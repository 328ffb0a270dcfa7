"""What an uploaded file is, read with ffprobe, and whether we can process it.

:func:`probe` describes a file as a small :class:`MediaInfo`;
:func:`validate_upload` refuses, with a :class:`MediaError` a tutor can act
on, what the steps cannot process: a file that is not a video, a video
without sound (nothing to transcribe), one that is too long, too short or too
big. Both run before any expensive work, and neither ever reads the whole file
into memory (ffprobe reads headers; the truncation check walks MP4 box headers).
"""

from __future__ import annotations

import json
import logging
import math
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers.errors import MediaError, PermanentError
from handlers.media import tools

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 60.0
"""ffprobe reads headers only; a file that takes longer than this is treated as unreadable."""

GIB = 1024**3

IMAGE_CODECS = {
    "png": "a PNG image",
    "mjpeg": "a JPEG image",
    "jpegls": "a JPEG image",
    "webp": "a WebP image",
    "gif": "a GIF image",
    "bmp": "a BMP image",
    "tiff": "a TIFF image",
    "svg": "an SVG image",
    "jpegxl": "a JPEG XL image",
    "heif": "a HEIF image",
}
"""Codecs that, in a single-picture file, mean a still image; with what to call it."""

_MAGIC = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or an Office document"),
    (b"Rar!", "a RAR archive"),
    (b"\x1f\x8b", "a compressed (gzip) archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
)
"""File signatures of things tutors upload by mistake, for files ffprobe cannot read."""

_ISO_BMFF_TYPES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"pdin", b"styp", b"sidx", b"moof"}


@dataclass(frozen=True)
class MediaLimits:
    """What an upload may be. The defaults suit recorded lectures."""

    max_duration_seconds: float = 4 * 3600.0
    max_size_bytes: int = 2 * GIB
    min_duration_seconds: float = 1.0


@dataclass(frozen=True)
class MediaInfo:
    """The facts about a media file that the steps need.

    ``has_video`` counts only real video: cover art in an audio file and a
    single still image do not count (see :attr:`image_kind`).
    """

    duration: float | None
    """Seconds; ``None`` when the container does not say."""
    size_bytes: int
    has_video: bool
    has_audio: bool
    width: int | None
    height: int | None
    video_codec: str | None
    audio_codec: str | None
    format_name: str
    audio_channels: int | None = None
    audio_sample_rate: int | None = None
    """As ffprobe reports it (Opus always decodes at 48 kHz whatever was encoded)."""
    image_kind: str | None = None
    """``"a PNG image"`` and the like when the file is a still picture, not a video."""


def probe(path: Path, *, ffprobe: str | None = None, timeout: float = PROBE_TIMEOUT_SECONDS) -> MediaInfo:
    """Describe the media file at ``path``.

    ``ffprobe`` defaults to the one :mod:`handlers.media.tools` resolves.
    Raises :class:`MediaError` for an empty, truncated or unreadable file (naming
    what it looks like when we can tell) and :class:`PermanentError` when
    ffprobe is not installed (:class:`~handlers.media.tools.ToolMissing`, with the fix).
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise MediaError("The file is empty (0 bytes); the upload may have failed. Please upload the video again.")
    data = _run_ffprobe(path, ffprobe, timeout)
    if data is None or not data.get("streams"):
        raise MediaError(_unreadable_reason(path, size))
    if _iso_bmff_truncated(path, size):
        raise MediaError(_TRUNCATED)
    return _media_info(data, size)


NEITHER_PICTURE_NOR_SOUND = "This file is not a video we can read (it has neither picture nor sound)."


def validate_upload(info: MediaInfo, limits: MediaLimits) -> None:
    """Raise :class:`MediaError` with the reason if the steps cannot process this file."""
    check_size(info.size_bytes, limits)
    if not info.has_video:
        if info.image_kind:
            raise MediaError(f"This file is not a video we can read (it looks like {info.image_kind}).")
        if info.has_audio:
            raise MediaError(
                "This file has sound but no picture (it looks like an audio recording). "
                "Please upload the lecture video."
            )
        raise MediaError(NEITHER_PICTURE_NOR_SOUND)
    if not info.has_audio:
        raise MediaError("The video has no sound track, so it cannot be transcribed.")
    if info.duration is None:
        logger.warning("the container does not state its duration; duration limits not checked")
        return
    if info.duration < limits.min_duration_seconds:
        raise MediaError(
            f"The video is only {format_duration(info.duration, round_up=False)} long; "
            f"it must be at least {format_duration(limits.min_duration_seconds)}."
        )
    if info.duration > limits.max_duration_seconds:
        raise MediaError(
            f"The video is {format_duration(info.duration)} long; "
            f"the limit is {format_duration(limits.max_duration_seconds)}."
        )


def check_size(size_bytes: int, limits: MediaLimits) -> None:
    """The size limit alone: callers check it before downloading anything."""
    if size_bytes > limits.max_size_bytes:
        raise MediaError(
            f"The file is {format_size(size_bytes)}; the limit is {format_size(limits.max_size_bytes, round_up=False)}."
        )


# ------------------------------------------------------------------ wording
def format_duration(seconds: float, *, round_up: bool = True) -> str:
    """``"3 h 20 min"``, ``"12 min 5 s"``, ``"0.5 seconds"``.

    Rounded up by default, so a video over a limit never reads as equal to it;
    ``round_up=False`` for amounts under a limit.
    """
    if seconds < 60:
        tenths = math.ceil(seconds * 10 - 1e-9) if round_up else math.floor(seconds * 10 + 1e-9)
        value = f"{tenths / 10:.1f}".removesuffix(".0")
        return f"{value} second" + ("" if value == "1" else "s")
    rounding = math.ceil if round_up else math.floor
    if seconds < 3600:
        total = int(rounding(seconds - 1e-9 if round_up else seconds + 1e-9))
        minutes, secs = divmod(total, 60)
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    total_minutes = int(rounding(seconds / 60 - 1e-9 if round_up else seconds / 60 + 1e-9))
    hours, minutes = divmod(total_minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def format_size(size_bytes: int, *, round_up: bool = True) -> str:
    """``"2.1 GB"``, ``"350 MB"`` (binary units, as file managers show them)."""
    for unit, factor in (("GB", GIB), ("MB", 1024**2), ("KB", 1024)):
        if size_bytes >= factor:
            tenths = size_bytes * 10 / factor
            tenths = math.ceil(tenths - 1e-9) if round_up else math.floor(tenths + 1e-9)
            value = f"{tenths / 10:.1f}".removesuffix(".0")
            return f"{value} {unit}"
    return f"{size_bytes} bytes"


# ------------------------------------------------------------------ helpers
_TRUNCATED = (
    "The file is incomplete: it ends before the video does (the upload or the recording "
    "may have been interrupted). Please upload it again."
)


def _run_ffprobe(path: Path, ffprobe: str | None, timeout: float) -> dict[str, Any] | None:
    command = [
        ffprobe or tools.ffprobe(), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path),
    ]
    try:
        completed = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise PermanentError("ffprobe is not installed") from None
    except subprocess.TimeoutExpired:
        raise MediaError("This file could not be read in time; it may be damaged.") from None
    if completed.returncode != 0:
        logger.info("ffprobe cannot read %s: %s", path, completed.stderr.decode(errors="replace").strip()[-500:])
        return None
    try:
        data = json.loads(completed.stdout)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _media_info(data: dict[str, Any], size: int) -> MediaInfo:
    streams = [s for s in data.get("streams", []) if isinstance(s, dict)]
    fmt = data.get("format") or {}
    format_name = str(fmt.get("format_name", ""))
    video = [
        s for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    image_kind = _image_kind(format_name, video, audio)
    first_video = video[0] if video else {}
    first_audio = audio[0] if audio else {}
    return MediaInfo(
        duration=_duration(fmt, streams),
        size_bytes=size,
        has_video=bool(video) and image_kind is None,
        has_audio=bool(audio),
        width=_int(first_video.get("width")),
        height=_int(first_video.get("height")),
        video_codec=first_video.get("codec_name"),
        audio_codec=first_audio.get("codec_name"),
        format_name=format_name,
        audio_channels=_int(first_audio.get("channels")),
        audio_sample_rate=_int(first_audio.get("sample_rate")),
        image_kind=image_kind,
    )


def _image_kind(format_name: str, video: list[dict[str, Any]], audio: list[dict[str, Any]]) -> str | None:
    """What still picture this is, if the file is one (an image, not a video)."""
    if audio or len(video) != 1:
        return None
    codec = str(video[0].get("codec_name", ""))
    single_picture = format_name.endswith("_pipe") or format_name == "image2" or video[0].get("nb_frames") == "1"
    if single_picture and codec in IMAGE_CODECS:
        return IMAGE_CODECS[codec]
    return None


def _duration(fmt: dict[str, Any], streams: list[dict[str, Any]]) -> float | None:
    """The container's duration, else the longest stream's, else ``None``."""
    stated = _float(fmt.get("duration"))
    if stated is not None:
        return stated
    known = [d for d in (_float(s.get("duration")) for s in streams) if d is not None]
    return max(known) if known else None


def _unreadable_reason(path: Path, size: int) -> str:
    if _iso_bmff_truncated(path, size):
        return _TRUNCATED
    kind = _sniff(path)
    if kind:
        return f"This file is not a video we can read (it looks like {kind})."
    return "This file is not a video we can read; it may be damaged or in a format we do not support."


def _sniff(path: Path) -> str | None:
    with path.open("rb") as handle:
        head = handle.read(512)
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html")):
        return "a web page"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return "a text file"
    return None


def _iso_bmff_truncated(path: Path, size: int) -> bool:
    """Whether an MP4/MOV file's top-level boxes claim more bytes than the file has.

    Reads only box headers (8 or 16 bytes each). Files that are not ISO BMFF
    (no known box type at the start) are never called truncated here.
    """
    with path.open("rb") as handle:
        offset = 0
        while offset + 8 <= size:
            handle.seek(offset)
            header = handle.read(16)
            box_size, box_type = struct.unpack(">I4s", header[:8])
            if offset == 0 and box_type not in _ISO_BMFF_TYPES:
                return False
            if box_size == 1:
                if len(header) < 16:
                    return True
                box_size = struct.unpack(">Q", header[8:16])[0]
            elif box_size == 0:  # the last box runs to the end of the file
                return False
            if box_size < 8:
                return False  # not a box structure we understand; let ffprobe decide
            if offset + box_size > size:
                return True
            offset += box_size
    return False


def _float(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
