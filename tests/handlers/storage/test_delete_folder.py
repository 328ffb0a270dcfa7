"""Deleting a queue's folder (a deleted lecture), on LocalStorage and MegaStorage (the fake MEGA server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.storage import Storage, StorageError, artifact_key, upload_key
from tests.handlers.storage.test_storage_contract import storage  # noqa: F401 - the parametrised fixture


def test_delete_folder_removes_every_artifact_of_the_queue_and_nothing_else(storage: Storage) -> None:  # noqa: F811
    doomed = [artifact_key("tutor-1", "queue-1", name) for name in ("compressed", "audio", "transcript_json")]
    kept = [artifact_key("tutor-1", "queue-2", "compressed"), upload_key("tutor-1", "upload-1.mp4"),
            artifact_key("tutor-2", "queue-1", "audio")]
    for key in doomed + kept:
        storage.put_stream(key, [b"bytes of ", key.encode()])

    assert storage.delete_folder("tutor-1/queue-1") == 3

    assert [key for key in doomed if storage.exists(key)] == []
    assert [key for key in kept if storage.exists(key)] == kept
    assert storage.delete_folder("tutor-1/queue-1") == 0  # absent is fine


def test_delete_folder_of_nothing_is_zero(storage: Storage) -> None:  # noqa: F811
    assert storage.delete_folder("tutor-9/never-made") == 0


@pytest.mark.parametrize("prefix", ["../outside", "tutor-1/../..", ""])
def test_delete_folder_refuses_keys_outside_storage(storage: Storage, prefix: str, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises((StorageError, ValueError)):
        storage.delete_folder(prefix)
