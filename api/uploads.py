"""Accepting uploads: streaming a video or an audio recording into storage, and the upload ledger.

A multipart ``file`` is checked by name and declared type before a byte is
stored, by its leading bytes before the first chunk is written, and by size
while it streams; any refusal aborts the write, and storage keeps nothing.
The SHA-256 is computed on the way.

The ledger (``video_processing_uploads``, ``video_processing_idempotency``)
remembers which queue each upload started and each request's
``Idempotency-Key``:

- the same key from the same owner answers with the same queue (202); while
  the first request with that key is still running, a second one gets 409
  with ``Retry-After``. A running request renews its claim every
  :data:`CLAIM_RENEW_SECONDS`; a claim left by a request whose process died
  expires :data:`CLAIM_TTL` after its last renewal, so the client's retry
  goes through within seconds, not minutes;
- the queue a key starts has an id derived from owner and key
  (:func:`queue_id_for`), so a retry of a request that died after creating
  its queue (before it could answer or record it) finds that queue instead of
  starting a second one;
- the same bytes uploaded again by the same owner answer with the earlier
  queue when it is pending, processing or completed (its results are reused,
  the new copy is deleted); after a failed or cancelled queue a new queue
  starts. The upload's row is written before its queue is started, so if the
  process dies in between, the same bytes uploaded again start that queue
  (with the first copy) instead of a second one. Two identical uploads racing
  each other may both start a queue.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import anyio.from_thread
import anyio.to_thread

from api.errors import Conflict, PayloadTooLarge, UnsupportedMediaType, shorten
from api.media import SNIFF_BYTES, declared_media, extension_of, sniff_problem
from api.multipart import PART_END, Event, PartStart
from handlers.failpoints import failpoint
from handlers.storage import Storage, StoredObject, upload_key
from projections.views import ReadModelView

CLAIM_TTL = timedelta(seconds=15)
"""After this long without renewal, an Idempotency-Key whose request died can be used again."""

CLAIM_RENEW_SECONDS = 3.0
"""How often a running request renews its claim on its Idempotency-Key (well within :data:`CLAIM_TTL`)."""

QUEUE_ID_NAMESPACE = uuid.UUID("6f1d4c2e-8a5b-4f0e-9c3d-2b7a1e5f9d08")


@dataclass(frozen=True)
class ReceivedFile:
    attachment_id: str
    key: str
    filename: str
    size: int
    sha256: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _as_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


class UploadLedger:
    """The upload and idempotency tables, on the read model's database."""

    def __init__(self, view: ReadModelView) -> None:
        self.view = view

    # ------------------------------------------------------ Idempotency-Key
    def claim(self, owner_id: str, key: str) -> tuple[str | None, str]:
        """Claim ``key`` for a new request: ``(None, claim)``, or ``(queue_id, "")`` if done.

        Raises :class:`Conflict` while another request with the key is running.
        """
        claim = uuid.uuid4().hex
        params = {"owner": owner_id, "key": key, "claim": claim, "at": _now()}
        with self.view.session() as session:
            session.execute(
                "INSERT INTO video_processing_idempotency (owner_id, idempotency_key, claim, created_at) "
                "VALUES (:owner, :key, :claim, :at) ON CONFLICT (owner_id, idempotency_key) DO NOTHING",
                params,
            )
            row = session.fetchone(
                "SELECT claim, queue_id, created_at FROM video_processing_idempotency "
                "WHERE owner_id = :owner AND idempotency_key = :key",
                params,
            )
            assert row is not None
            if row["queue_id"]:
                return str(row["queue_id"]), ""
            if row["claim"] == claim:
                return None, claim
            if datetime.now(timezone.utc) - _as_datetime(row["created_at"]) > CLAIM_TTL:
                session.execute(
                    "UPDATE video_processing_idempotency SET claim = :claim, created_at = :at "
                    "WHERE owner_id = :owner AND idempotency_key = :key AND queue_id IS NULL",
                    params,
                )
                return None, claim
        raise Conflict(
            f"a request with Idempotency-Key {shorten(key)!r} is still being processed; "
            "retry when it has answered",
            headers={"Retry-After": str(int(CLAIM_RENEW_SECONDS))},
        )

    def renew(self, owner_id: str, key: str, claim: str) -> None:
        """Keep ``claim`` alive while its request runs (its ``created_at`` is the last renewal)."""
        with self.view.session() as session:
            session.execute(
                "UPDATE video_processing_idempotency SET created_at = :at "
                "WHERE owner_id = :owner AND idempotency_key = :key AND claim = :claim AND queue_id IS NULL",
                {"owner": owner_id, "key": key, "claim": claim, "at": _now()},
            )

    def settle(self, owner_id: str, key: str, claim: str, queue_id: str) -> None:
        with self.view.session() as session:
            session.execute(
                "UPDATE video_processing_idempotency SET queue_id = :queue "
                "WHERE owner_id = :owner AND idempotency_key = :key AND claim = :claim",
                {"owner": owner_id, "key": key, "claim": claim, "queue": queue_id},
            )

    def release(self, owner_id: str, key: str, claim: str) -> None:
        """Forget a claim whose request failed, so the key can be retried at once."""
        with self.view.session() as session:
            session.execute(
                "DELETE FROM video_processing_idempotency WHERE owner_id = :owner "
                "AND idempotency_key = :key AND claim = :claim AND queue_id IS NULL",
                {"owner": owner_id, "key": key, "claim": claim},
            )

    # --------------------------------------------------------------- uploads
    def record(self, owner_id: str, queue_id: str, received: ReceivedFile) -> None:
        with self.view.session() as session:
            session.execute(
                "INSERT INTO video_processing_uploads (queue_id, owner_id, attachment_id, sha256, "
                "size_bytes, filename, created_at) VALUES (:queue, :owner, :attachment, :sha, :size, "
                ":filename, :at) ON CONFLICT (queue_id) DO NOTHING",
                {
                    "queue": queue_id, "owner": owner_id, "attachment": received.attachment_id,
                    "sha": received.sha256, "size": received.size, "filename": received.filename,
                    "at": _now(),
                },
            )

    def same_content(self, owner_id: str, sha256: str) -> tuple[str, ReceivedFile] | None:
        """The newest upload of ``owner_id`` with these bytes whose queue did not fail or get
        cancelled: its queue id and its stored file. The queue may not exist yet (its row is
        written first) or not be projected yet."""
        row = self.view.fetchone(
            "SELECT u.queue_id, u.attachment_id, u.sha256, u.size_bytes, u.filename "
            "FROM video_processing_uploads AS u "
            "LEFT JOIN video_processing_queue AS q ON q.id = u.queue_id "
            "WHERE u.owner_id = :owner AND u.sha256 = :sha "
            "AND (q.status IS NULL OR q.status NOT IN ('failed', 'cancelled')) "
            "ORDER BY u.created_at DESC LIMIT 1",
            {"owner": owner_id, "sha": sha256},
        )
        if row is None:
            return None
        stored = ReceivedFile(
            attachment_id=row["attachment_id"], key=upload_key(owner_id, row["attachment_id"]),
            filename=row["filename"] or row["attachment_id"], size=int(row["size_bytes"] or 0), sha256=row["sha256"],
        )
        return str(row["queue_id"]), stored


# ------------------------------------------------------------------ streaming
class FileStream:
    """The bytes of one multipart file part, checked as they pass."""

    def __init__(self, events: AsyncIterator[Event], part: PartStart, limit: int) -> None:
        self.events = events
        self.part = part
        self.limit = limit
        self.size = 0
        self.digest = hashlib.sha256()

    async def chunks(self) -> AsyncIterator[bytes]:
        head = bytearray()
        sniffed = False
        async for event in self.events:
            if event is PART_END:
                break
            if not isinstance(event, bytes):
                continue
            self._count(event)
            if not sniffed:
                head.extend(event)
                if len(head) < SNIFF_BYTES:
                    continue
                self._sniff(bytes(head))
                sniffed, event = True, bytes(head)
            yield event
        if not sniffed:
            self._sniff(bytes(head))
            if head:
                yield bytes(head)

    def _count(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise PayloadTooLarge(
                f"the file is larger than the limit of {self.limit} bytes "
                "(VIDPIPE_MAX_UPLOAD_BYTES); compress it or split it"
            )
        self.digest.update(chunk)

    def _sniff(self, head: bytes) -> None:
        media = declared_media(self.part.filename, self.part.content_type)
        problem = sniff_problem(self.part.filename, media, head)
        if problem:
            raise UnsupportedMediaType(problem)


async def store_file(
    storage: Storage, key: str, attachment_id: str, stream: FileStream
) -> ReceivedFile:
    """Stream the part into ``storage`` under ``key``; any refusal leaves nothing stored."""
    source = stream.chunks()

    def pulled() -> Iterator[bytes]:
        written = 0
        while True:
            try:
                chunk = anyio.from_thread.run(source.__anext__)
            except StopAsyncIteration:
                return
            yield chunk
            written += 1
            if written == 1:
                failpoint("upload.mid_upload")  # the first chunk is in storage, the rest still arriving

    stored: StoredObject = await anyio.to_thread.run_sync(storage.put_stream, key, pulled())
    return ReceivedFile(
        attachment_id=attachment_id,
        key=stored.key,
        filename=stream.part.filename or attachment_id,
        size=stream.size,
        sha256=stream.digest.hexdigest(),
    )


def queue_id_for(owner_id: str, idempotency_key: str) -> uuid.UUID:
    """The id of the queue an upload request with this key starts: the same for every retry."""
    return uuid.uuid5(QUEUE_ID_NAMESPACE, f"{owner_id}\x00{idempotency_key}")


def new_attachment_id(filename: str | None) -> str:
    """A fresh id for an uploaded file, keeping its (checked) extension."""
    return uuid.uuid4().hex + extension_of(filename)
