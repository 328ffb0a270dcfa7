"""Is it a video or an audio recording? By file extension, declared content type,
the first bytes and, for audio, what ffprobe finds in the stored file."""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath
from typing import Literal

from handlers.errors import MediaError
from handlers.media.probe import probe
from handlers.storage import Storage

Media = Literal["video", "audio"]
"""What an upload is: a video (the four steps) or an audio recording (no compress step)."""

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpeg", ".mpg", ".3gp")
AUDIO_EXTENSIONS = (".mp3", ".m4a", ".aac", ".wav", ".flac", ".ogg", ".oga", ".opus", ".weba", ".mka")
GENERIC_CONTENT_TYPES = ("application/octet-stream", "binary/octet-stream")
SNIFF_BYTES = 64
"""How many leading bytes :func:`container_of` needs at most."""

PLAYABLE_TYPES = {
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
    ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".mpeg": "video/mpeg", ".mpg": "video/mpeg",
    ".3gp": "video/3gpp", ".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".aac": "audio/aac", ".wav": "audio/wav",
    ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg",
    ".weba": "audio/webm", ".mka": "audio/x-matroska",
}
"""The Content-Type a stored original is played with, by its extension (the compressed video is MP4)."""


def extension_of(filename: str | None) -> str:
    """The lower-case extension, ``""`` when there is none."""
    return PurePosixPath(filename or "").suffix.lower()


def _declared(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def declared_type_problem(filename: str | None, content_type: str | None) -> str | None:
    """Why the name or declared type is not a video or audio file we take, or None."""
    extension = extension_of(filename)
    if extension not in VIDEO_EXTENSIONS + AUDIO_EXTENSIONS:
        shown = extension or "no extension"
        return (
            f"{filename!r} has {shown}; upload a video ({', '.join(VIDEO_EXTENSIONS)}) "
            f"or an audio recording ({', '.join(AUDIO_EXTENSIONS)})"
        )
    declared = _declared(content_type)
    if declared and not declared.startswith(("video/", "audio/")) and declared not in GENERIC_CONTENT_TYPES:
        return f"the file was sent as {declared}; upload a video (video/*) or an audio recording (audio/*)"
    return None


def declared_media(filename: str | None, content_type: str | None) -> Media:
    """What the name and declared type say the file is: audio by an audio extension, or by
    ``audio/*`` in a container both kinds use (``.webm``, ``.mp4``); a video otherwise."""
    if extension_of(filename) in AUDIO_EXTENSIONS or _declared(content_type).startswith("audio/"):
        return "audio"
    return "video"


def container_of(head: bytes, media: Media = "video") -> str | None:
    """The container the leading bytes announce, or None; audio files may also be MP3, AAC, WAV, FLAC or Ogg."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mp4/quicktime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska/webm"
    if media == "audio":
        return _audio_container_of(head)
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return "mpeg"
    return None


def _audio_container_of(head: bytes) -> str | None:
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF0 == 0xF0):
        return "mp3/aac"  # an ID3 tag, or an MPEG audio / ADTS frame header
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    return None


def sniff_problem(filename: str | None, media: Media, head: bytes) -> str | None:
    """Why the leading bytes are not those of a ``media`` file, or None."""
    if not head:
        return f"{filename!r} is empty; upload a video or an audio recording"
    if container_of(head, media) is not None:
        return None
    if media == "audio":
        return (
            f"{filename!r} does not look like an audio recording (MP3, M4A/AAC, WAV, FLAC, Ogg/Opus or WebM); "
            "its first bytes match none of them"
        )
    return (
        f"{filename!r} does not look like a video (MP4, MOV, WebM, MKV, AVI or MPEG) or an audio recording; "
        "its first bytes match none of them"
    )


def probed_media(storage: Storage, key: str, filename: str | None) -> Media:
    """What ffprobe finds in the stored file at ``key``: ``"audio"`` for sound without picture,
    ``"video"`` when it has a picture too; :class:`MediaError` for a file that cannot be read or
    has no sound (the message names the file and says why)."""
    local_path = getattr(storage, "path", None)
    with tempfile.TemporaryDirectory(prefix="vidpipe-probe-") as work:
        if callable(local_path):
            path = Path(local_path(key))
        else:
            path = storage.download(key, Path(work) / ("upload" + extension_of(key)))
        try:
            info = probe(path)
        except MediaError:
            raise MediaError(
                f"{filename!r} could not be read as an audio recording: it is damaged or in a format "
                "we do not support"
            ) from None
    if info.has_video and info.has_audio:
        return "video"
    if not info.has_audio:
        raise MediaError(f"{filename!r} has no sound to transcribe (neither an audio stream nor a video with sound)")
    return "audio"


def playable_type(key: str) -> str:
    """The Content-Type to play the stored file at ``key`` with: by its extension, MP4 without one."""
    return PLAYABLE_TYPES.get(extension_of(key), "video/mp4")
