"""Storage hygiene: what upload requests that died midway left in storage, found and removed.

An upload request streams the file into storage before it starts its queue.
A request whose process dies on the way leaves one of two things behind:

- a **partial file**: ``.incoming-*``, the temporary file the local storage
  writes before renaming it into place (the bytes stopped arriving);
- an **unreferenced upload**: a complete ``<owner>/uploads/<id>`` that no
  queue uses (the process died after storing it and before recording it).

:class:`StorageSweeper` lists storage, then reads what is *referenced* (read
after listing, so a file referenced meanwhile is seen as such):

- every queue's source (``options["source"]`` of its ``Created`` event) and
  every key a step recorded in its ``StepCompleted`` outputs, from the event
  log, which is the truth (a queue not yet projected counts);
- every upload in the upload ledger (``video_processing_uploads``: its row is
  written before its queue starts, so an upload whose queue a retry will start
  counts);
- everything in the folder of a queue of the event log (its artifacts).

A lecture deleted by its tutor (a ``Deleted`` tombstone) references nothing:
whatever its deletion left is orphaned. Orphaned files older than the grace
period (:data:`DEFAULT_GRACE_SECONDS`, ``VIDPIPE_STORAGE_SWEEP_GRACE_SECONDS``;
by modification time, which a running upload keeps moving) are removed, each
logged; younger ones may belong to a request still running and are left for
a later sweep. Files the sweeper does not recognise (not under an owner's
uploads, not in a queue's folder) are reported as ``unrecognised`` and never
removed. Local storage is listed by walking its directory, MEGA by its
``list_objects()`` (a file there exists only once its upload completed, so
MEGA has no partial files: its upload time stands for the modification time).

:meth:`StorageSweeper.report` counts (``make storage-report``, a ``make
doctor`` line); :meth:`StorageSweeper.sweep` removes; :meth:`start` sweeps
every ``interval`` seconds in a thread of the process that runs the followers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from eventsourcing.utils import get_topic

from domain import VideoProcessing
from domain.queue import ProcessingQueue
from handlers.storage import Storage
from projections.views import ReadModelView
from projections.worker import PeriodicWorker

logger = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS = 3600.0
"""How old an unreferenced file must be before it is removed (a running upload is younger)."""
DEFAULT_INTERVAL_SECONDS = 600.0
"""How often the follower process sweeps."""
PARTIAL_PREFIX = ".incoming-"
"""Name prefix of the local storage's temporary files (see :class:`handlers.storage.local.LocalStorage`)."""
PAGE = 1000
REFERRING_TOPICS = tuple(get_topic(event) for event in (
    ProcessingQueue.Created, ProcessingQueue.StepCompleted, ProcessingQueue.Deleted))
"""The events that refer to stored files (or, a tombstone, stop referring): only these are read."""

Kind = Literal["referenced", "partial", "unreferenced_upload", "deleted_lecture", "young", "unrecognised"]
ORPHANED: tuple[Kind, ...] = ("partial", "unreferenced_upload", "deleted_lecture")


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int
    modified: float
    """Modification time, seconds since the epoch."""


@dataclass
class Tally:
    files: int = 0
    bytes: int = 0

    def add(self, stored: StoredFile) -> None:
        self.files += 1
        self.bytes += stored.size


@dataclass
class StorageReport:
    """Storage by kind: ``referenced``, the orphaned kinds (:data:`ORPHANED`), ``young``
    (unreferenced but within the grace period) and ``unrecognised``; ``removed`` after a sweep."""

    storage: str
    grace_seconds: float
    listable: bool = True
    kinds: dict[str, Tally] = field(default_factory=dict)
    orphans: list[tuple[Kind, StoredFile]] = field(default_factory=list)
    removed: Tally = field(default_factory=Tally)
    failed: list[str] = field(default_factory=list)

    def tally(self, kind: str) -> Tally:
        return self.kinds.setdefault(kind, Tally())

    @property
    def orphaned(self) -> Tally:
        total = Tally()
        for kind in ORPHANED:
            tally = self.kinds.get(kind, Tally())
            total.files += tally.files
            total.bytes += tally.bytes
        return total

    @property
    def referenced(self) -> Tally:
        return self.kinds.get("referenced", Tally())

    def as_dict(self) -> dict[str, Any]:
        return {
            "storage": self.storage,
            "listable": self.listable,
            "grace_seconds": self.grace_seconds,
            "referenced": vars(self.referenced),
            "orphaned": vars(self.orphaned),
            "kinds": {kind: vars(tally) for kind, tally in sorted(self.kinds.items())},
            "removed": vars(self.removed),
            "failed": self.failed,
        }

    def summary(self) -> str:
        """One line: referenced and orphaned files and bytes."""
        if not self.listable:
            return f"{self.storage} storage cannot be listed; nothing swept"
        young = self.kinds.get("young", Tally())
        line = (f"referenced {self.referenced.files} files ({human_size(self.referenced.bytes)}), "
                f"orphaned {self.orphaned.files} files ({human_size(self.orphaned.bytes)})")
        if young.files:
            line += f", {young.files} unreferenced within the {self.grace_seconds:.0f} s grace ({human_size(young.bytes)})"
        unrecognised = self.kinds.get("unrecognised")
        if unrecognised and unrecognised.files:
            line += f", {unrecognised.files} unrecognised (never removed)"
        return line


@dataclass
class References:
    """What the event log and the upload ledger refer to."""

    keys: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)


class StorageSweeper:
    """Finds and removes orphaned files (see the module docstring)."""

    def __init__(self, app: VideoProcessing, view: ReadModelView, storage: Storage, *,
                 grace_seconds: float = DEFAULT_GRACE_SECONDS, interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
                 clock: Any = time.time) -> None:
        self.app = app
        self.view = view
        self.storage = storage
        self.grace_seconds = grace_seconds
        self.interval_seconds = interval_seconds
        self.key = "storage-sweeper"
        self._clock = clock
        self.sweeps = 0
        self._worker = PeriodicWorker(
            self.key, self.sweep, interval=interval_seconds, wait_first=True, log=logger, level=logging.WARNING,
            failure="%s: sweep failed; trying again in %.0f s",
        )

    # ------------------------------------------------------------ one pass
    def report(self) -> StorageReport:
        """Classify every stored file; removes nothing."""
        report = StorageReport(self.storage.name, self.grace_seconds)
        files = list_files(self.storage)
        if files is None:
            report.listable = False
            return report
        references = self.references()  # after listing: a file referenced meanwhile counts as referenced
        now = self._clock()
        for stored in files:
            kind = classify(stored, references, now, self.grace_seconds)
            report.tally(kind).add(stored)
            if kind in ORPHANED:
                report.orphans.append((kind, stored))
        return report

    def sweep(self) -> StorageReport:
        """Remove every orphaned file older than the grace period; log each; return the report."""
        report = self.report()
        for kind, stored in report.orphans:
            try:
                self.storage.delete(stored.key)
            except Exception as error:  # noqa: BLE001 - one file that cannot go does not stop the sweep
                report.failed.append(f"{stored.key}: {error}")
                logger.warning("storage sweeper could not remove %s: %s", stored.key, error)
                continue
            report.removed.add(stored)
            logger.info("storage sweeper removed %s (%s, %d bytes, %.0f s old)",
                        stored.key, kind.replace("_", " "), stored.size, self._clock() - stored.modified)
            _prune_empty_folders(self.storage, stored.key)
        self.sweeps += 1
        if report.removed.files or report.failed:
            logger.info("storage sweep: removed %d orphaned files (%s); %s", report.removed.files,
                        human_size(report.removed.bytes), report.summary())
        return report

    def references(self) -> References:
        """Keys and queues the event log refers to, and the upload ledger's files."""
        found = References()
        for owner, attachment in _ledger(self.view):
            found.keys.add(f"{owner}/uploads/{attachment}")
        per_queue: dict[str, set[str]] = {}
        start = 1
        while True:
            notifications = self.app.recorder.select_notifications(start=start, limit=PAGE, topics=REFERRING_TOPICS)
            if not notifications:
                break
            for notification in notifications:
                queue = str(notification.originator_id)
                topic = notification.topic
                if topic.endswith(".Deleted"):
                    found.deleted.add(queue)
                elif topic.endswith(".Created") or topic.endswith(".StepCompleted"):
                    event = self.app.mapper.to_domain_event(notification)
                    values = getattr(event, "options", None) or getattr(event, "outputs", None) or {}
                    per_queue.setdefault(queue, set()).update(_keys_in(values))
                    found.queues.add(queue)
            start = notifications[-1].id + 1
        for queue, keys in per_queue.items():
            if queue not in found.deleted:
                found.keys.update(keys)
        found.queues -= found.deleted
        return found

    # ------------------------------------------------------------ background
    @property
    def errors(self) -> int:
        """How many background sweeps failed (each tried again an interval later)."""
        return self._worker.errors

    def start(self) -> StorageSweeper:
        """Sweep every ``interval_seconds`` in a thread until :meth:`stop`; errors are logged and retried."""
        self._worker.start()
        return self

    def stop(self) -> None:
        self._worker.stop(timeout=10)


def classify(stored: StoredFile, references: References, now: float, grace_seconds: float) -> Kind:
    """What ``stored`` is: referenced, one of the orphaned kinds, young (within the grace), unrecognised."""
    parts = stored.key.split("/")
    old = now - stored.modified > grace_seconds
    if parts[-1].startswith(PARTIAL_PREFIX):
        return "partial" if old else "young"
    if stored.key in references.keys:
        return "referenced"
    if len(parts) == 3 and parts[1] == "uploads":
        return "unreferenced_upload" if old else "young"
    if len(parts) == 3 and parts[1] in references.queues:
        return "referenced"
    if len(parts) == 3 and parts[1] in references.deleted:
        return "deleted_lecture" if old else "young"
    return "unrecognised"


def list_files(storage: Storage) -> list[StoredFile] | None:
    """Every file in ``storage``: its ``list_objects()`` (MEGA), else a walk of its directory
    (local); None when it can be listed neither way."""
    lister = getattr(storage, "list_objects", None)
    if callable(lister):
        return [StoredFile(key, size, modified) for key, size, modified in lister()]
    root = getattr(storage, "root", None)
    if storage.name != "local" or not isinstance(root, Path):
        return None
    return list(_walk(root))


def _walk(root: Path) -> Iterator[StoredFile]:
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            try:
                stat = path.stat()
            except OSError:  # removed meanwhile (renamed into place, swept)
                continue
            yield StoredFile(path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime)


def _prune_empty_folders(storage: Storage, key: str) -> None:
    """Remove the folders ``key`` leaves empty (local storage), never the root."""
    root = getattr(storage, "root", None)
    if not isinstance(root, Path):
        return
    folder = (root / key).parent
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): stop
            return
        folder = folder.parent


def _ledger(view: ReadModelView) -> Iterable[tuple[str, str]]:
    rows = view.fetchall("SELECT owner_id, attachment_id FROM video_processing_uploads")
    return [(str(row["owner_id"]), str(row["attachment_id"])) for row in rows]


def _keys_in(values: Any) -> Iterator[str]:
    """Strings that look like storage keys (``a/b/c``) anywhere in ``values``."""
    if isinstance(values, str):
        if values.count("/") >= 2 and not values.startswith(("/", "http:", "https:")):
            yield values
    elif isinstance(values, dict):
        for value in values.values():
            yield from _keys_in(value)
    elif isinstance(values, (list, tuple)):
        for value in values:
            yield from _keys_in(value)


def human_size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover

