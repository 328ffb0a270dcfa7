"""A "video" upload that holds only sound: the compress step's outcome for it, shared by its providers.

A voice memo saved as ``.mp4``, a screen recorder that captured no picture, a
``.webm`` sent as ``video/webm`` with only an Opus track: there is nothing to
compress, but everything to transcribe. The compress step completes without a
compressed file and says so in its outputs (:func:`played_as_recorded`); the
media link then plays the original upload, as it does for a queue without
compress (``api/routes/search.py``). A file with neither picture nor sound
still fails, with its reason (:func:`handlers.media.probe.validate_upload`).
"""

from __future__ import annotations

from typing import Any

from handlers.media.probe import MediaInfo

PLAYBACK_ORIGINAL = "original"
"""``outputs["playback"]`` of a compress step that left the original to be played as uploaded."""


def sound_without_picture(info: MediaInfo) -> bool:
    """True for an audio recording in a video's clothes (cover art and still images are no picture)."""
    return info.has_audio and not info.has_video


def played_as_recorded(info: MediaInfo) -> dict[str, Any]:
    """The compress step's outputs for a recording without picture: no ``video`` key, nothing stored."""
    return {
        "media": "audio",
        "playback": PLAYBACK_ORIGINAL,
        "duration_seconds": info.duration,
        "source_size_bytes": info.size_bytes,
        "audio_codec": info.audio_codec,
    }
