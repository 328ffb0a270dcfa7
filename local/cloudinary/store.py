"""Assets on disk: originals with their metadata, chunked uploads in progress, derived files.

Layout under ``<data_dir>/<cloud>/video/<public_id>/``: ``original.<ext>``,
``asset.json`` (version, probe facts), ``derived/v<version>/<hash>.<format>``.
Chunked uploads assemble in ``<data_dir>/<cloud>/incoming/<upload id>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
import shutil
import string
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from local.cloudinary.media import Probe, transcode
from local.cloudinary.transformations import Derivation, ffmpeg_args

_PUBLIC_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_./-]{0,254}$")
_UPLOAD_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_ALPHABET = string.ascii_lowercase + string.digits


class StoreError(Exception):
    """A request names something the store cannot hold (bad public id, bad range)."""


def new_public_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(20))


@dataclass(frozen=True)
class Asset:
    public_id: str
    version: int
    created_at: str
    format: str
    original_filename: str
    bytes: int
    etag: str
    probe: Probe

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["probe"] = dataclasses.asdict(self.probe)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Asset:
        return cls(**{**data, "probe": Probe(**data["probe"])})


@dataclass
class _Incoming:
    path: Path
    total: int
    received: int = 0
    public_id: str | None = None


class AssetStore:
    """Originals and derived files of one cloud; safe to use from several threads."""

    def __init__(self, root: Path, *, ffmpeg: str, preset: str, workers: int) -> None:
        self.root = root
        (root / "video").mkdir(parents=True, exist_ok=True)
        (root / "incoming").mkdir(parents=True, exist_ok=True)
        self._ffmpeg, self._preset = ffmpeg, preset
        self._lock = threading.Lock()
        self._incoming: dict[str, _Incoming] = {}
        self._jobs: dict[Path, Future[Path]] = {}
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cloudinary-eager")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- originals ---------------------------------------------------------

    def asset_dir(self, public_id: str) -> Path:
        if not _PUBLIC_ID.match(public_id) or ".." in public_id.split("/"):
            raise StoreError(f"Invalid public_id {public_id!r}")
        return self.root / "video" / public_id

    def get(self, public_id: str) -> Asset | None:
        try:
            meta = self.asset_dir(public_id) / "asset.json"
        except StoreError:
            return None
        if not meta.is_file():
            return None
        return Asset.from_json(json.loads(meta.read_text()))

    def destroy(self, public_id: str) -> bool:
        """Remove the asset with its derived files; False when there is none."""
        with self._lock:
            if self.get(public_id) is None:
                return False
            shutil.rmtree(self.asset_dir(public_id), ignore_errors=True)
        return True

    def original(self, asset: Asset) -> Path:
        return self.asset_dir(asset.public_id) / f"original.{asset.format}"

    def save(self, public_id: str, source: Path, *, original_filename: str, probe: Probe) -> Asset:
        """Make ``source`` (moved) the newest version of ``public_id``."""
        folder = self.asset_dir(public_id)
        with self._lock:
            previous = self.get(public_id)
            version = max(int(time.time()), previous.version + 1 if previous else 0)
            folder.mkdir(parents=True, exist_ok=True)
            if previous:
                self.original(previous).unlink(missing_ok=True)
            asset = Asset(
                public_id=public_id,
                version=version,
                created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                format=probe.format,
                original_filename=original_filename,
                bytes=source.stat().st_size,
                etag=_md5(source),
                probe=probe,
            )
            shutil.move(source, self.original(asset))
            (folder / "asset.json").write_text(json.dumps(asset.to_json()))
        return asset

    # --- chunked uploads ---------------------------------------------------

    def write_chunk(
        self, upload_id: str, start: int, end: int, total: int, data: IO[bytes], public_id: str | None
    ) -> tuple[Path | None, int, str | None]:
        """Write bytes ``start..end`` of a chunked upload.

        Returns (the assembled file once every byte arrived, bytes received,
        the public id fixed by the first chunk).
        """
        if not _UPLOAD_ID.match(upload_id):
            raise StoreError("Invalid X-Unique-Upload-Id")
        if not 0 <= start <= end < total:
            raise StoreError(f"Invalid Content-Range bytes {start}-{end}/{total}")
        with self._lock:
            incoming = self._incoming.get(upload_id)
            if incoming is None:
                path = self.root / "incoming" / upload_id
                path.write_bytes(b"")
                incoming = self._incoming[upload_id] = _Incoming(path, total, public_id=public_id)
            if incoming.total != total:
                raise StoreError("Content-Range total differs from the first chunk's")
        with incoming.path.open("r+b") as out:
            out.seek(start)
            written = _copy(data, out, end - start + 1)
        with self._lock:
            incoming.received += written
            if incoming.received < incoming.total:
                return None, incoming.received, incoming.public_id
            del self._incoming[upload_id]
            return incoming.path, incoming.received, incoming.public_id

    def incoming_path(self) -> Path:
        return self.root / "incoming" / f"single-{secrets.token_hex(8)}"

    # --- derived files -----------------------------------------------------

    def derived_path(self, asset: Asset, transformation: str, format: str) -> Path:
        digest = hashlib.sha1(transformation.encode()).hexdigest()[:16]
        return self.asset_dir(asset.public_id) / "derived" / f"v{asset.version}" / f"{digest}.{format}"

    def derive(self, asset: Asset, transformation: str, derivation: Derivation) -> Path:
        """Create the derived file now (or wait for the job already creating it)."""
        job = self._job(asset, transformation, derivation)
        return job.result()

    def derive_async(self, asset: Asset, transformation: str, derivation: Derivation) -> None:
        self._job(asset, transformation, derivation)

    def derived_state(self, asset: Asset, transformation: str, format: str) -> tuple[str, str | None]:
        """``("ready"|"processing"|"failed"|"absent", failure message)``."""
        target = self.derived_path(asset, transformation, format)
        with self._lock:
            job = self._jobs.get(target)
        if job is not None and not job.done():
            return "processing", None
        if job is not None and job.exception() is not None:
            return "failed", str(job.exception())
        return ("ready", None) if target.is_file() else ("absent", None)

    def _job(self, asset: Asset, transformation: str, derivation: Derivation) -> Future[Path]:
        target = self.derived_path(asset, transformation, derivation.format)
        with self._lock:
            job = self._jobs.get(target)
            if job is not None and (not job.done() or job.exception() is None):
                return job
            job = self._executor.submit(self._transcode, self.original(asset), target, derivation)
            self._jobs[target] = job
            return job

    def _transcode(self, source: Path, target: Path, derivation: Derivation) -> Path:
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".partial-{target.name}")
        transcode(ffmpeg_args(derivation, source, partial, ffmpeg=self._ffmpeg, preset=self._preset))
        partial.replace(target)
        return target


def _copy(source: IO[bytes], out: IO[bytes], limit: int) -> int:
    written = 0
    while written < limit:
        block = source.read(min(1024 * 1024, limit - written))
        if not block:
            break
        out.write(block)
        written += len(block)
    return written


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()
