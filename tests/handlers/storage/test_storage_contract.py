"""The Storage contract, run against every implementation: LocalStorage and MegaStorage.

LocalStorage runs on a temporary directory. MegaStorage runs the unmodified
``mega`` client (mega.py-v2) against the fake MEGA server (``local.mega``) on
a loopback port, so these tests cover these parts of MEGA's protocol: login
(``us0`` prelogin, ``us`` with PBKDF2 key derivation, RSA-encrypted ``csid``
session), listing and key decryption (``f``), folder creation (``p`` with
``t: 1``), uploads (``u``, chunked AES-CTR ``POST <url>/<offset>``, completion
handle, ``p`` with encrypted attributes and key), downloads (``g``, streamed
GET, CTR decryption and the chunk-MAC check) and deletion (``d``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.storage import (
    CHUNK_SIZE,
    ArtifactNotFound,
    Storage,
    StorageError,
    artifact_key,
    upload_key,
)
from handlers.storage.local import LocalStorage

KEY = artifact_key("tutor-1", "queue-1", "compressed")


@pytest.fixture(params=["local", "mega"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    factory: Callable[..., Storage] = request.getfixturevalue("mega_storage_factory")
    return factory()


@pytest.fixture(scope="module")
def video_bytes() -> bytes:
    """A few megabytes, not a multiple of any chunk size."""
    return os.urandom(3 * CHUNK_SIZE + 123_457)


def pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """``data`` in pieces of the given sizes, cycling."""
    offset, index = 0, 0
    while offset < len(data):
        size = sizes[index % len(sizes)]
        yield data[offset : offset + size]
        offset += size
        index += 1


def test_put_file_round_trip_of_a_multi_megabyte_file(storage: Storage, tmp_path: Path, video_bytes: bytes) -> None:
    source = tmp_path / "lecture.mp4"
    source.write_bytes(video_bytes)

    stored = storage.put_file(KEY, source)

    assert stored.key == KEY and stored.size == len(video_bytes)
    assert storage.exists(KEY)
    assert storage.size(KEY) == len(video_bytes)
    destination = storage.download(KEY, tmp_path / "nested" / "dir" / "back.mp4")
    assert destination == tmp_path / "nested" / "dir" / "back.mp4"
    assert destination.read_bytes() == video_bytes
    assert [p.name for p in destination.parent.iterdir()] == ["back.mp4"], "no temporary files left behind"


def test_iter_bytes_streams_in_chunks_of_at_most_chunk_size(
    storage: Storage, tmp_path: Path, video_bytes: bytes
) -> None:
    source = tmp_path / "lecture.mp4"
    source.write_bytes(video_bytes)
    storage.put_file(KEY, source)

    chunks = list(storage.iter_bytes(KEY))

    assert len(chunks) > 1
    assert all(0 < len(chunk) <= CHUNK_SIZE for chunk in chunks)
    assert b"".join(chunks) == video_bytes


def test_put_stream_round_trip(storage: Storage, tmp_path: Path, video_bytes: bytes) -> None:
    data = video_bytes[: 2 * CHUNK_SIZE + 77]

    stored = storage.put_stream(KEY, pieces(data, [1, 65_536, 1_000_003, 17]))

    assert stored.size == len(data)
    assert storage.size(KEY) == len(data)
    assert storage.download(KEY, tmp_path / "back.bin").read_bytes() == data


def test_small_and_empty_objects(storage: Storage, tmp_path: Path) -> None:
    storage.put_stream(KEY, [b"x"])
    assert b"".join(storage.iter_bytes(KEY)) == b"x"

    storage.put_stream(KEY, [])

    assert storage.exists(KEY)
    assert storage.size(KEY) == 0
    assert storage.download(KEY, tmp_path / "empty.bin").read_bytes() == b""
    assert b"".join(storage.iter_bytes(KEY)) == b""


def test_put_replaces_an_existing_object(storage: Storage, tmp_path: Path) -> None:
    storage.put_stream(KEY, [b"first version, longer than the second"])

    storage.put_stream(KEY, [b"second"])

    assert storage.size(KEY) == len(b"second")
    assert storage.download(KEY, tmp_path / "back.bin").read_bytes() == b"second"
    storage.put_file(KEY, tmp_path / "back.bin")
    assert b"".join(storage.iter_bytes(KEY)) == b"second"


def test_missing_object(storage: Storage, tmp_path: Path) -> None:
    missing = artifact_key("tutor-1", "queue-404", "audio")

    assert not storage.exists(missing)
    with pytest.raises(ArtifactNotFound) as raised:
        storage.download(missing, tmp_path / "out.ogg")
    assert raised.value.key == missing
    assert not (tmp_path / "out.ogg").exists()
    with pytest.raises(ArtifactNotFound):
        list(storage.iter_bytes(missing))
    with pytest.raises(ArtifactNotFound):
        storage.size(missing)
    storage.delete(missing)  # absent objects are fine


def test_delete(storage: Storage, tmp_path: Path) -> None:
    storage.put_stream(KEY, [b"to be deleted"])

    storage.delete(KEY)

    assert not storage.exists(KEY)
    with pytest.raises(ArtifactNotFound):
        storage.download(KEY, tmp_path / "out.bin")
    storage.delete(KEY)


def test_keys_from_artifact_key_and_upload_key_are_independent(storage: Storage) -> None:
    keys: dict[str, bytes] = {
        upload_key("tutor-1", "upload-7", ".mp4"): b"original upload",
        artifact_key("tutor-1", "queue-1", "transcript_json"): b'{"segments": []}',
        artifact_key("tutor-1", "queue-2", "transcript_json"): b'{"segments": [1]}',
        artifact_key("tutor-2", "queue-1", "transcript_json"): b'{"segments": [2]}',
        artifact_key("tutor-1", "queue-1", "transcript_srt"): b"1\n00:00:00,000 --> 00:00:01,000\nhi\n",
    }
    for key, data in keys.items():
        storage.put_stream(key, [data])

    for key, data in keys.items():
        assert b"".join(storage.iter_bytes(key)) == data, key
        assert storage.size(key) == len(data)
    storage.delete(artifact_key("tutor-1", "queue-1", "transcript_json"))
    assert not storage.exists(artifact_key("tutor-1", "queue-1", "transcript_json"))
    assert storage.exists(artifact_key("tutor-1", "queue-2", "transcript_json"))
    assert storage.exists(artifact_key("tutor-2", "queue-1", "transcript_json"))


@pytest.mark.parametrize("key", ["../escape.txt", "tutor-1/../../escape.txt", "/etc/passwd"])
def test_a_key_outside_the_storage_is_refused(storage: Storage, tmp_path: Path, key: str) -> None:
    source = tmp_path / "payload.bin"
    source.write_bytes(b"payload")
    operations: list[Callable[[], Any]] = [
        lambda: storage.put_file(key, source),
        lambda: storage.put_stream(key, [b"payload"]),
        lambda: storage.download(key, tmp_path / "out.bin"),
        lambda: list(storage.iter_bytes(key)),
        lambda: storage.delete(key),
    ]
    for operation in operations:
        with pytest.raises(StorageError):
            operation()
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "out.bin").exists()


def test_unsafe_names_are_refused_when_building_keys() -> None:
    with pytest.raises(ValueError):
        artifact_key("..", "queue-1", "audio")
    with pytest.raises(ValueError):
        upload_key("tutor-1", "../x")
