"""What the server learns of an upload with ffprobe, and running ffmpeg for a derivation."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers.media import tools

_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "gif", "tiff_pipe"}


class InvalidMedia(Exception):
    """The file is not a video or audio file ffmpeg can decode."""


@dataclass(frozen=True)
class Probe:
    format: str
    duration: float
    width: int | None
    height: int | None
    video_codec: str | None
    audio_codec: str | None
    audio_frequency: int | None
    audio_channels: int | None
    frame_rate: float | None
    bit_rate: int | None

    def video_json(self) -> dict[str, Any] | None:
        return {"codec": self.video_codec, "bit_rate": self.bit_rate} if self.video_codec else None

    def audio_json(self) -> dict[str, Any] | None:
        if not self.audio_codec:
            return None
        return {
            "codec": self.audio_codec,
            "frequency": self.audio_frequency,
            "channels": self.audio_channels,
        }


def probe(path: Path, *, ffprobe: str | None = None, original_name: str | None = None) -> Probe:
    """Facts about ``path``; :class:`InvalidMedia` if it is not decodable timed media.

    ``ffprobe`` defaults to the one :mod:`handlers.media.tools` resolves.
    """
    completed = subprocess.run(
        [ffprobe or tools.ffprobe(), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if completed.returncode != 0:
        raise InvalidMedia(completed.stderr.strip() or "ffprobe could not read the file")
    info = json.loads(completed.stdout or "{}")
    container = info.get("format", {})
    format_names = str(container.get("format_name", "")).split(",")
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video" and not _is_cover(s)), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = _float(container.get("duration"))
    if set(format_names) & _IMAGE_FORMATS or not (video or audio) or not duration:
        raise InvalidMedia(f"not timed media (container {container.get('format_name')!r})")
    return Probe(
        format=_format_name(format_names, original_name),
        duration=round(duration, 3),
        width=_int(video.get("width")) if video else None,
        height=_int(video.get("height")) if video else None,
        video_codec=video.get("codec_name") if video else None,
        audio_codec=audio.get("codec_name") if audio else None,
        audio_frequency=_int(audio.get("sample_rate")) if audio else None,
        audio_channels=_int(audio.get("channels")) if audio else None,
        frame_rate=_rate(video.get("avg_frame_rate")) if video else None,
        bit_rate=_int(container.get("bit_rate")),
    )


def _is_cover(stream: dict[str, Any]) -> bool:
    return bool(stream.get("disposition", {}).get("attached_pic"))


def _format_name(names: list[str], original_name: str | None) -> str:
    extension = Path(original_name or "").suffix.lstrip(".").lower()
    if extension and (extension in names or (extension in {"mp4", "m4a", "mov"} and "mp4" in names)):
        return extension
    return "mp4" if "mp4" in names else names[0]


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def _rate(value: Any) -> float | None:
    numerator, _, denominator = str(value).partition("/")
    try:
        return round(float(numerator) / float(denominator or 1), 3)
    except (ValueError, ZeroDivisionError):
        return None


def transcode(args: list[str], *, timeout: float = 3600) -> None:
    """Run one ffmpeg command; ``RuntimeError`` with ffmpeg's own words when it fails."""
    completed = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if completed.returncode != 0:
        lines = completed.stderr.strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"ffmpeg exited with {completed.returncode}")
