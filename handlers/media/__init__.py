"""Media work with ffmpeg/ffprobe: probing uploads, compressing, extracting audio, cutting at silences."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AudioPiece:
    """A piece of a longer audio file, cut at silences: its file and its place in the whole."""

    path: Path
    start: float
    """Offset of the piece in the whole audio, in seconds."""
    end: float
