"""The deletion service itself (api/deletion.py), on SQLite and Postgres, without HTTP:
the second purge catches an artifact a running step wrote late, a failed purge is tried
again, and an original another queue still uses is kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.auth import Caller
from api.deletion import LectureDeletion
from api.errors import NotFound
from handlers.storage import artifact_key, upload_key
from handlers.storage.local import LocalStorage
from tests.conftest import Store
from tests.support import wait_until

OWNER = Caller("tutor-1", "tutor")


def started(store: Store, storage: LocalStorage, attachment: str = "upload-1.mp4") -> str:
    source = upload_key(OWNER.owner_id, attachment)
    if not storage.exists(source):
        storage.put_stream(source, [b"the original"])
    queue_id = str(store.app.start_processing(OWNER.owner_id, attachment, {"source": source, "filename": "a.mp4"}))
    store.follower.catch_up()
    return queue_id


def test_a_late_artifact_of_the_running_step_is_purged_on_the_second_pass(store: Store, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    deletion = LectureDeletion(store.app, store.view, storage, repurge_seconds=0.3)
    queue_id = started(store, storage)
    store.app.start_step(queue_id, "compress", 1)

    purged = deletion.delete(OWNER, queue_id)
    assert purged is not None and purged.original
    late = artifact_key(OWNER.owner_id, queue_id, "compressed")
    storage.put_stream(late, [b"written by the step before it noticed"])  # the step had not stopped yet

    wait_until(lambda: not storage.exists(late), 5, "the second purge")
    with pytest.raises(NotFound):
        deletion.delete(OWNER, queue_id)
    deletion.close()


def test_a_failed_purge_is_tried_again_and_the_lecture_is_deleted_anyway(store: Store, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    failures = []

    def flaky_remote(owner: str, queue: str) -> None:
        if not failures:
            failures.append(queue)
            raise ConnectionError("Cloudinary unreachable")

    deletion = LectureDeletion(store.app, store.view, storage, [flaky_remote], repurge_seconds=0.2)
    queue_id = started(store, storage)
    store.app.cancel(queue_id, by=OWNER.owner_id)

    assert deletion.delete(OWNER, queue_id) is None
    assert store.app.get_queue(queue_id).is_deleted
    wait_until(lambda: len(failures) == 1 and not storage.exists(upload_key(OWNER.owner_id, "upload-1.mp4")), 5,
               "the purge to be tried again")
    deletion.close()


def test_an_original_another_queue_uses_is_kept_and_others_cannot_delete(store: Store, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    deletion = LectureDeletion(store.app, store.view, storage, repurge_seconds=0)
    first, second = started(store, storage), started(store, storage)  # the same attachment, twice

    with pytest.raises(NotFound):
        deletion.delete(Caller("tutor-2", "tutor"), first)
    with pytest.raises(NotFound):
        deletion.delete(OWNER, "not-a-queue-id")

    assert deletion.delete(OWNER, first) is not None
    assert storage.exists(upload_key(OWNER.owner_id, "upload-1.mp4")), "queue 2 still needs it"
    store.follower.catch_up()
    purged = deletion.delete(OWNER, second)
    assert purged is not None and purged.original
    assert not storage.exists(upload_key(OWNER.owner_id, "upload-1.mp4"))
