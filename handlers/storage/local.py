"""Storage in a local directory: the embedded default (in place of MEGA)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from handlers.storage import CHUNK_SIZE, ArtifactNotFound, StorageError, StoredObject


class LocalStorage:
    """Objects are files under ``root``; writes go to a temp file and are renamed into place."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise StorageError(f"key {key!r} points outside the storage directory")
        return path

    def put_file(self, key: str, source: Path) -> StoredObject:
        with Path(source).open("rb") as handle:
            return self.put_stream(key, iter(lambda: handle.read(CHUNK_SIZE), b""))

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> StoredObject:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return StoredObject(key, size)

    def download(self, key: str, destination: Path) -> Path:
        source = self.path(key)
        if not source.is_file():
            raise ArtifactNotFound(key)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
        return destination

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        source = self.path(key)
        if not source.is_file():
            raise ArtifactNotFound(key)
        with source.open("rb") as handle:
            yield from iter(lambda: handle.read(CHUNK_SIZE), b"")

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        source = self.path(key)
        if not source.is_file():
            raise ArtifactNotFound(key)
        return source.stat().st_size

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_folder(self, prefix: str) -> int:
        """Remove every object under ``prefix/`` (and the folder); returns how many files went."""
        folder = self.path(prefix)
        if not folder.is_dir():
            return 0
        removed = sum(1 for path in folder.rglob("*") if path.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return removed
