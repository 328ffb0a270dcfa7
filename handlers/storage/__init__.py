"""Where artifacts live: one interface, a local directory or MEGA behind it.

Keys name artifacts by owner and queue (see :func:`artifact_key`); every
implementation streams in chunks, so no step holds a whole video in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from domain.errors import VidpipeError

CHUNK_SIZE = 1024 * 1024
"""Bytes per read/write when streaming."""

ARTIFACTS = {
    "original": "original",
    "compressed": "compressed.mp4",
    "audio": "audio.ogg",
    "transcript_json": "transcript.json",
    "transcript_srt": "transcript.srt",
    "transcript_vtt": "transcript.vtt",
    "transcript_txt": "transcript.txt",
}
"""Artifact names within a queue's folder."""

_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


class StorageError(VidpipeError):
    """Storage failed (unreachable, bad credentials, missing object)."""


class ArtifactNotFound(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"artifact {key!r} does not exist")
        self.key = key


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


def safe_part(value: str, what: str) -> str:
    """``value`` if it can be one path segment of a key; refuses traversal and odd names."""
    if not _SAFE_PART.match(value) or ".." in value:
        raise ValueError(f"{what} {value!r} cannot be used in a storage key")
    return value


def artifact_key(owner_id: str, queue_id: str, name: str, extension: str = "") -> str:
    """``<owner>/<queue>/<artifact>``; ``name`` is one of :data:`ARTIFACTS` (or a free name)."""
    filename = ARTIFACTS.get(name, name) + extension
    return "/".join(
        (safe_part(owner_id, "owner id"), safe_part(queue_id, "queue id"), safe_part(filename, "artifact name"))
    )


def upload_key(owner_id: str, upload_id: str, extension: str = "") -> str:
    """Where an uploaded original lives before (and while) its queue runs."""
    return "/".join((safe_part(owner_id, "owner id"), "uploads", safe_part(upload_id + extension, "upload id")))


class Storage(Protocol):
    """Artifact storage. Keys are ``/``-separated relative paths (see :func:`artifact_key`)."""

    name: str

    def put_file(self, key: str, source: Path) -> StoredObject:
        """Store the file at ``source`` under ``key`` (replacing any), streaming it."""

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> StoredObject:
        """Store the bytes of ``chunks`` under ``key`` (replacing any)."""

    def download(self, key: str, destination: Path) -> Path:
        """Write the object to ``destination``, streaming; :class:`ArtifactNotFound` if absent."""

    def iter_bytes(self, key: str) -> Iterable[bytes]:
        """The object's bytes in chunks of at most :data:`CHUNK_SIZE`."""

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None:
        """Remove the object; absent objects are fine."""

    def delete_folder(self, prefix: str) -> int:
        """Remove every object under ``prefix/`` (a queue's folder); returns how many; absent is fine."""
