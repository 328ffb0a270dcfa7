"""Deleting a lecture: the tombstone in the event log, then everything derived, gone.

``DELETE /api/lectures/{queueId}`` (owner only; anyone else, and a lecture
deleted already, get 404) runs :meth:`LectureDeletion.delete`:

1. the aggregate records ``Cancelled`` (when the queue still runs: its pending
   step messages are cancelled by the dispatcher and a running step stops
   within seconds, as for any cancellation) and ``Deleted(by)`` in one write —
   the tombstone: who deleted the queue and when (the event's timestamp),
   no content;
2. :meth:`LectureDeletion.purge` removes what the steps wrote outside the event
   log: the queue's storage folder ``<owner>/<queue>/`` (compressed video, audio,
   transcripts in every format), the uploaded original (unless another queue of
   the owner still uses the same attachment), the chunk embeddings, the upload
   ledger's rows (so the same bytes uploaded again start a new queue), the
   Idempotency-Keys that named the queue, its batch entry and push-delivery
   records, and Cloudinary's asset when Cloudinary compressed it;
3. the projections drop the queue's rows when they apply ``Deleted`` (status
   table and view, steps, notifications, search lectures and moments), live and
   in a rebuild from event 0 alike, since the tombstone is part of the log.

A step that was running when the lecture was deleted may finish writing one
artifact after the first purge and before it notices the cancellation
(:data:`REPURGE_SECONDS`, within the step's cancel poll): the purge runs once
more after that grace, in this process; so it does when the first purge failed
(storage or Cloudinary unreachable: the answer is still ``204``, the lecture is
deleted). Every purge is idempotent; a process that dies before the second
purge leaves those files to the storage sweeper.

The earlier events stay in the log (the event store is append-only): they
hold references (storage keys that now point at nothing, the file name), not
the video, transcript or vectors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from api.auth import Caller
from api.errors import NotFound, shorten
from api.settings import Settings
from domain import QueueNotFound, VideoProcessing
from domain.queue import ProcessingQueue
from handlers.storage import Storage, safe_part, upload_key
from projections.views import ReadModelView

logger = logging.getLogger(__name__)

REPURGE_SECONDS = 10.0
"""When a running queue was deleted, purge again after this long (a late artifact of its last step)."""

RemotePurge = Callable[[str, str], object]
"""Removes a queue's assets kept elsewhere (Cloudinary): ``(owner_id, queue_id)``."""


@dataclass(frozen=True)
class Purged:
    """What one purge removed."""

    files: int
    embeddings: int
    original: bool


class LectureDeletion:
    """Owner-scoped deletion of a queue and everything derived from it."""

    def __init__(
        self,
        app: VideoProcessing,
        view: ReadModelView,
        storage: Storage,
        remote: Sequence[RemotePurge] = (),
        *,
        repurge_seconds: float = REPURGE_SECONDS,
    ) -> None:
        self.app = app
        self.view = view
        self.storage = storage
        self.remote = list(remote)
        self.repurge_seconds = repurge_seconds
        self._timers: list[threading.Timer] = []

    def delete(self, caller: Caller, queue_id: str) -> Purged | None:
        """Delete the caller's lecture; 404 for others', unknown and already deleted ones.

        None when the purge failed (storage or Cloudinary unreachable): the lecture is
        deleted all the same and the purge is tried again after :data:`REPURGE_SECONDS`."""
        queue = self.owned(caller, queue_id)
        was_running = not queue.is_terminal
        if not self.app.delete(queue.id, by=caller.owner_id):
            raise _not_found(queue_id)
        logger.info("owner %s deleted queue %s (it was %s)", caller.owner_id, queue.id, queue.status)
        try:
            purged: Purged | None = self.purge(queue)
        except Exception:  # noqa: BLE001 - the tombstone is recorded; storage is tried again shortly
            logger.warning("queue %s: purging after its deletion failed; trying again in %.0f s",
                           queue.id, self.repurge_seconds, exc_info=True)
            purged, was_running = None, True
        if was_running and self.repurge_seconds > 0:
            self._later(queue)
        return purged

    def owned(self, caller: Caller, queue_id: str) -> ProcessingQueue:
        try:
            queue = self.app.get_queue(queue_id)
        except QueueNotFound:
            raise _not_found(queue_id) from None
        if queue.owner_id != caller.owner_id or queue.is_deleted:
            raise _not_found(queue_id)
        return queue

    def purge(self, queue: ProcessingQueue) -> Purged:
        """Remove the queue's artifacts, original, embeddings and ledger rows (idempotent)."""
        owner, queue_id = queue.owner_id, str(queue.id)
        files = self.storage.delete_folder(f"{safe_part(owner, 'owner id')}/{safe_part(queue_id, 'queue id')}")
        original = self._delete_original(queue)
        with self.view.session() as session:
            found = session.fetchone(
                "SELECT COUNT(*) AS n FROM video_embeddings WHERE queue_id = :id", {"id": queue_id}
            )
            session.execute("DELETE FROM video_embeddings WHERE queue_id = :id", {"id": queue_id})
            session.execute("DELETE FROM video_processing_uploads WHERE queue_id = :id", {"id": queue_id})
            session.execute("DELETE FROM video_processing_idempotency WHERE queue_id = :id", {"id": queue_id})
            session.execute("DELETE FROM notification_deliveries WHERE queue_id = :id", {"id": queue_id})
            session.execute("DELETE FROM video_processing_batch_items WHERE queue_id = :id", {"id": queue_id})
        for purge in self.remote:
            purge(owner, queue_id)
        embeddings = int(found["n"]) if found else 0
        logger.info("queue %s purged: %d files, %d embeddings, original %s", queue_id, files, embeddings,
                    "removed" if original else "kept or absent")
        return Purged(files=files, embeddings=embeddings, original=original)

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()

    def _delete_original(self, queue: ProcessingQueue) -> bool:
        """The uploaded original, unless another of the owner's queues uses the same attachment."""
        source = (queue.options or {}).get("source")
        try:
            own = upload_key(queue.owner_id, queue.attachment_id)
        except ValueError:
            return False
        if source != own or not self.storage.exists(own):
            return False
        shared = self.view.fetchone(
            "SELECT COUNT(*) AS n FROM video_processing_queue WHERE owner_id = :owner "
            "AND attachment_id = :attachment AND id <> :id",
            {"owner": queue.owner_id, "attachment": queue.attachment_id, "id": str(queue.id)},
        )
        if shared and int(shared["n"]):
            logger.info("queue %s: original %s kept, %s other queue(s) use it", queue.id, own, shared["n"])
            return False
        self.storage.delete(own)
        return True

    def _later(self, queue: ProcessingQueue) -> None:
        def again() -> None:
            try:
                self.purge(queue)
            except Exception:  # noqa: BLE001 - a background retry; the first purge answered the request
                logger.warning("queue %s: the second purge failed", queue.id, exc_info=True)

        timer = threading.Timer(self.repurge_seconds, again)
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()


def build_deletion(settings: Settings, app: VideoProcessing, view: ReadModelView, storage: Storage) -> LectureDeletion:
    """The deletion service; with ``CLOUDINARY_URL`` it also destroys the lecture's Cloudinary asset."""
    remote: list[RemotePurge] = []
    if settings.cloudinary_url:
        from handlers.providers.cloudinary import CloudinaryAssets, CloudinaryConfig

        overrides = {"delivery_base": settings.cloudinary_delivery_url} if settings.cloudinary_delivery_url else {}
        assets = CloudinaryAssets(CloudinaryConfig.from_url(settings.cloudinary_url.get_secret_value(), **overrides))
        remote.append(assets.destroy_lecture)
    return LectureDeletion(app, view, storage, remote, repurge_seconds=max(REPURGE_SECONDS, 3 * settings.cancel_poll_seconds))


def _not_found(queue_id: str) -> NotFound:
    return NotFound(f"lecture {shorten(queue_id)} does not exist (or was deleted)")
