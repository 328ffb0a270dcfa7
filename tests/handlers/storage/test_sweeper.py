"""The storage sweeper removes what dead upload requests left, and never a referenced file.

On SQLite and Postgres: queues in the event log, rows in the upload ledger and
files in a local storage directory, some older than the grace period.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from api.uploads import ReceivedFile, UploadLedger
from handlers.storage.local import LocalStorage
from handlers.storage.sweeper import StorageSweeper, list_files
from tests.conftest import Store
from tests.support import wait_until

GRACE = 3600.0
OLD = time.time() - 2 * GRACE


def put(storage: LocalStorage, key: str, size: int = 100, *, old: bool = True) -> Path:
    path = storage.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if old:
        os.utime(path, (OLD, OLD))
    return path


@pytest.fixture
def layout(store: Store, storage: LocalStorage) -> dict[str, list[str]]:
    """Files of every kind; returns the keys that must stay and those that must go."""
    app = store.app
    running = str(app.start_processing("tutor-1", "a.mp4", {"source": "tutor-1/uploads/a.mp4"}))
    deleted = str(app.start_processing("tutor-2", "e.mp4", {"source": "tutor-2/uploads/e.mp4"}))
    app.delete(deleted, by="tutor-2")
    app.start_processing("tutor-3", "s.mp4", {"source": "tutor-3/uploads/s.mp4"})
    UploadLedger(store.view).record("tutor-1", "queue-not-started-yet", ReceivedFile(
        attachment_id="b.mp4", key="tutor-1/uploads/b.mp4", filename="b.mp4", size=100, sha256="0" * 64))
    keep = [
        "tutor-1/uploads/a.mp4",                      # a queue's source
        f"tutor-1/{running}/compressed.mp4",          # a queue's artifact
        "tutor-1/uploads/b.mp4",                      # in the ledger: a retry will start its queue
        "tutor-3/uploads/s.mp4",
        "tutor-1/uploads/young.mp4",                  # unreferenced, but within the grace: may be running
        "tutor-1/uploads/.incoming-young",            # an upload streaming now
        "notes/readme.txt",                           # unrecognised: never removed
    ]
    remove = [
        "tutor-1/uploads/died-before-queue.mp4",      # stored, its request died before recording it
        "tutor-1/uploads/.incoming-dead",             # the bytes stopped arriving
        "tutor-2/uploads/e.mp4",                      # a deleted lecture's leftovers
        f"tutor-2/{deleted}/audio.ogg",
    ]
    for key in keep + remove:
        put(storage, key, old="young" not in key)
    return {"keep": keep, "remove": remove}


def test_report_counts_referenced_and_orphaned_files_and_bytes(
    store: Store, storage: LocalStorage, layout: dict[str, list[str]],
) -> None:
    report = StorageSweeper(store.app, store.view, storage, grace_seconds=GRACE).report()
    assert (report.referenced.files, report.referenced.bytes) == (4, 400)
    assert (report.orphaned.files, report.orphaned.bytes) == (4, 400)
    assert {kind: tally.files for kind, tally in report.kinds.items()} == {
        "referenced": 4, "young": 2, "unrecognised": 1,
        "unreferenced_upload": 2, "partial": 1, "deleted_lecture": 1,
    }
    assert sorted(stored.key for _, stored in report.orphans) == sorted(layout["remove"])
    assert all((storage.root / key).is_file() for key in layout["keep"] + layout["remove"])  # a report removes nothing
    assert "orphaned 4 files" in report.summary() and "referenced 4 files" in report.summary()


def test_sweep_removes_only_orphans_older_than_the_grace_and_logs_each(
    store: Store, storage: LocalStorage, layout: dict[str, list[str]], caplog: pytest.LogCaptureFixture,
) -> None:
    sweeper = StorageSweeper(store.app, store.view, storage, grace_seconds=GRACE)
    with caplog.at_level(logging.INFO, "handlers.storage.sweeper"):
        swept = sweeper.sweep()
    assert (swept.removed.files, swept.removed.bytes, swept.failed) == (4, 400, [])
    assert sorted(f.key for f in list_files(storage) or []) == sorted(layout["keep"])
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for key in layout["remove"]:
        assert f"removed {key}" in logged
    assert not (storage.root / "tutor-2").exists()  # the folders it emptied went too
    after = sweeper.report()
    assert after.orphaned.files == 0 and after.referenced.files == 4


def test_a_young_orphan_goes_once_it_is_older_than_the_grace(store: Store, storage: LocalStorage) -> None:
    put(storage, "tutor-1/uploads/.incoming-slow", old=False)
    sweeper = StorageSweeper(store.app, store.view, storage, grace_seconds=GRACE)
    assert sweeper.sweep().removed.files == 0
    later = StorageSweeper(store.app, store.view, storage, grace_seconds=GRACE, clock=lambda: time.time() + 2 * GRACE)
    assert later.sweep().removed.files == 1


def test_a_step_output_elsewhere_is_referenced(store: Store, storage: LocalStorage) -> None:
    """A key a step recorded in its outputs counts even outside its queue's folder (a reused artifact)."""
    app = store.app
    queue = str(app.start_processing("tutor-1", "a.mp4", {"source": "tutor-1/uploads/a.mp4"}, steps=["compress"]))
    app.start_step(queue, "compress", 1)
    app.complete_step(queue, "compress", 1, outputs={"compressed": "tutor-1/uploads/reused.mp4"})
    put(storage, "tutor-1/uploads/reused.mp4")
    assert StorageSweeper(store.app, store.view, storage, grace_seconds=GRACE).sweep().removed.files == 0


def test_the_follower_process_sweeps_periodically(store: Store, storage: LocalStorage) -> None:
    put(storage, "tutor-1/uploads/.incoming-dead")
    sweeper = StorageSweeper(store.app, store.view, storage, grace_seconds=GRACE, interval_seconds=0.05).start()
    try:
        wait_until(lambda: not (storage.root / "tutor-1/uploads/.incoming-dead").exists(), 10, "the sweep")
    finally:
        sweeper.stop()
    assert sweeper.sweeps >= 1


@pytest.fixture(params=["local", "mega"])
def any_storage(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    if request.param == "local":
        return LocalStorage(tmp_path / "any")
    return request.getfixturevalue("mega_storage_factory")()


def test_local_and_mega_storage_are_swept_alike(store: Store, any_storage) -> None:  # noqa: ANN001
    store.app.start_processing("tutor-1", "a.mp4", {"source": "tutor-1/uploads/a.mp4"})
    for key in ("tutor-1/uploads/a.mp4", "tutor-1/uploads/dead.mp4"):
        any_storage.put_stream(key, [b"x" * 10])
    now = StorageSweeper(store.app, store.view, any_storage, grace_seconds=GRACE)
    assert now.report().listable
    assert now.sweep().removed.files == 0  # both younger than the grace
    later = StorageSweeper(store.app, store.view, any_storage, grace_seconds=GRACE,
                           clock=lambda: time.time() + 2 * GRACE)
    swept = later.sweep()
    assert (swept.removed.files, swept.removed.bytes, swept.referenced.files) == (1, 10, 1)
    assert any_storage.exists("tutor-1/uploads/a.mp4") and not any_storage.exists("tutor-1/uploads/dead.mp4")
