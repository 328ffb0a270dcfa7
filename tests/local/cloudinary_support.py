"""Shared by the local Cloudinary server tests and the Cloudinary provider tests:
real media made with ffmpeg, ffprobe facts, and the server on loopback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from handlers.media import tools
from local.cloudinary import Settings

CLOUD = "vidpipe-test"
API_KEY = "123456789012345"
API_SECRET = "test-secret-abc"


def server_settings(data_dir: Path, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "cloud_name": CLOUD,
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "data_dir": data_dir,
        "x264_preset": "ultrafast",
    }
    fields.update(overrides)
    return Settings(**fields)


def make_video(path: Path, *, size: str = "1920x1080", seconds: float = 2, rate: int = 15) -> Path:
    """A real H.264/AAC MP4: ffmpeg's test pattern with a 440 Hz tone (mono, 44.1 kHz)."""
    subprocess.run(
        [
            tools.ffmpeg(), "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
            "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-shortest", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def make_png(path: Path) -> Path:
    """A PNG image (to be renamed ``.mp4`` by the caller: not a video)."""
    subprocess.run(
        [tools.ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240", "-frames:v", "1",
         "-f", "image2", "-c:v", "png", str(path)],
        check=True,
    )  # fmt: skip
    return path


def streams(path: Path) -> dict[str, dict[str, Any]]:
    """ffprobe's first video and first audio stream of ``path``, by codec type."""
    completed = subprocess.run(
        [tools.ffprobe(), "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    info = json.loads(completed.stdout)
    found: dict[str, dict[str, Any]] = {"format": info["format"]}
    for stream in info["streams"]:
        found.setdefault(stream["codec_type"], stream)
    return found
