"""Is it a video? By file extension, declared content type and the first bytes."""

from __future__ import annotations

from pathlib import PurePosixPath

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpeg", ".mpg", ".3gp")
GENERIC_CONTENT_TYPES = ("application/octet-stream", "binary/octet-stream")
SNIFF_BYTES = 64
"""How many leading bytes :func:`container_of` needs at most."""


def extension_of(filename: str | None) -> str:
    """The lower-case extension, ``""`` when there is none."""
    return PurePosixPath(filename or "").suffix.lower()


def declared_type_problem(filename: str | None, content_type: str | None) -> str | None:
    """Why the name or declared type is not a video we take, or None."""
    extension = extension_of(filename)
    if extension not in VIDEO_EXTENSIONS:
        shown = extension or "no extension"
        return f"{filename!r} has {shown}; upload a video: {', '.join(VIDEO_EXTENSIONS)}"
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared and not declared.startswith("video/") and declared not in GENERIC_CONTENT_TYPES:
        return f"the file was sent as {declared}; upload a video (video/*)"
    return None


def container_of(head: bytes) -> str | None:
    """The video container the leading bytes announce, or None."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mp4/quicktime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska/webm"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return "mpeg"
    return None
