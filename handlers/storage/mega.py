"""Storage on MEGA through ``mega.py-v2`` (import ``mega``), with ``MEGA_EMAIL``/``MEGA_PASSWORD``.

Keys map to folders under a root folder of the account's Cloud Drive:
``owner/queue/compressed.mp4`` is the file ``compressed.mp4`` in
``<root>/owner/queue/`` (root ``vidpipe`` by default), folders created as
needed. A put uploads the new file first and only then deletes the file it
replaces, so a failed upload never loses the old one; when several files
share a key (two replicas raced), reads take the newest.

What comes from the library and what is ours: login (``us0``/``us``, key
derivation, session), the JSON-RPC layer (``POST <api>/cs``, its EAGAIN
retries), node listing and key decryption (``f``), folder creation (``p``)
and deletion (``d``) are the library's. Transfers are ours, on the library's
API client and crypto helpers, speaking the same protocol: its ``download``
reads the whole file into memory (a lecture video must not be), and its
``upload`` crashes on files whose last chunk is 16 bytes or less and MACs in a
slow Python loop. Ours stream chunk by chunk (at most 1 MiB in memory), with
MEGA's chunk MAC computed on upload and checked on download. We also replace
the library's HTTP client (bounded timeouts, another API base URL, HTTP 5xx
seen as such) and bound its retries on ``-3`` EAGAIN, which are endless
otherwise.

Failures come out as :class:`StorageError` subclasses:

* :class:`StorageUnavailable` (``transient = True``): connection refused,
  timeouts, HTTP 5xx/429, EAGAIN and the other "try later" codes. The step
  runner treats it like a transient provider error (retry with backoff).
* :class:`MegaLoginFailed` (permanent): MEGA refused the email/password.
* :class:`ArtifactNotFound`: no file under the key.
* :class:`StorageRefused` (permanent): anything else MEGA refused (quota, ...).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import tempfile
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from Crypto.Cipher import AES
from Crypto.Util import Counter
from mega import Mega, RequestError
from mega.crypto import a32_to_base64, a32_to_str, base64_url_encode, encrypt_attr, encrypt_key, get_chunks, str_to_a32
from tenacity import RetryError, retry_if_exception_type, stop_after_attempt, wait_exponential

from handlers.storage import ArtifactNotFound, StorageError, StoredObject, safe_part

logger = logging.getLogger(__name__)

T = TypeVar("T")

MEGA_API_HOST = "g.api.mega.co.nz"
"""The host the library sends every API request to (``https://g.api.<domain>/cs``)."""

_TRANSIENT_CODES = {-3: "EAGAIN", -4: "ERATELIMIT", -5: "EFAILED", -6: "ETOOMANY", -8: "EEXPIRED",
                    -18: "ETEMPUNAVAIL", -19: "ETOOMANYCONNECTIONS", -1: "EINTERNAL"}
_LOGIN_REFUSED = {-9: "no such account or wrong password", -16: "the account is blocked",
                  -26: "the account needs two-factor authentication, which vidpipe cannot answer",
                  -2: "the email or password was not accepted"}
_FILE, _FOLDER = 0, 1


class StorageUnavailable(StorageError):
    """MEGA cannot be reached or asked us to come back later; retrying may succeed."""

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageRefused(StorageError):
    """MEGA refused the request; retrying will not help."""

    transient = False


class MegaLoginFailed(StorageRefused):
    """MEGA refused the credentials."""


class _SessionExpired(Exception):
    """``-15`` ESID: log in again and repeat the operation once."""


class MegaStorage:
    """Artifacts in a MEGA account (see the module docstring).

    ``api_url`` (e.g. ``http://127.0.0.1:8090``, the fake server) replaces
    ``https://g.api.mega.co.nz``; transfer URLs are whatever the API hands out.
    ``api_attempts``/``retry_wait_s`` bound the library's retries on EAGAIN.
    Each thread gets its own logged-in client (the library's request sequence
    numbers are not thread-safe).
    """

    name = "mega"

    def __init__(
        self,
        email: str,
        password: str,
        *,
        root: str = "vidpipe",
        api_url: str | None = None,
        timeout_s: float = 60.0,
        api_attempts: int = 4,
        retry_wait_s: float = 2.0,
        spool_dir: Path | None = None,
    ) -> None:
        if not email or not password:
            raise MegaLoginFailed("MEGA storage needs MEGA_EMAIL and MEGA_PASSWORD; one of them is empty")
        self.email = email
        self._password = password
        self.root = tuple(safe_part(part, "root folder") for part in root.split("/") if part)
        self.api_url = httpx.URL(api_url.rstrip("/")) if api_url else None
        self.timeout_s = timeout_s
        self.api_attempts = api_attempts
        self.retry_wait_s = retry_wait_s
        self.spool_dir = spool_dir
        self._local = threading.local()
        self._clients: list[Mega] = []
        self._clients_lock = threading.Lock()

    # --- the Storage protocol ---------------------------------------------

    def put_file(self, key: str, source: Path) -> StoredObject:
        parts = self._parts(key)
        size = Path(source).stat().st_size

        def put(client: Mega) -> StoredObject:
            tree = _Tree(client.get_files(), client.root_id)
            replaced = tree.files(parts)
            parent = self._ensure_folders(client, tree, parts[:-1])
            _upload(client, Path(source), parent, parts[-1])
            for node in replaced:
                self._destroy(client, node["h"])
            return StoredObject(key, size)

        logger.debug("uploading %s (%d bytes) to MEGA", key, size)
        return self._run(key, put)

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> StoredObject:
        """Spooled to a temporary file first (in ``spool_dir``): MEGA's ``u`` needs the size up front."""
        self._parts(key)
        fd, spool = tempfile.mkstemp(prefix="vidpipe-mega-", dir=self.spool_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            return self.put_file(key, Path(spool))
        finally:
            Path(spool).unlink(missing_ok=True)

    def download(self, key: str, destination: Path) -> Path:
        """Written to a temporary file beside ``destination``, renamed once the MAC matched."""
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=destination.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.iter_bytes(key):
                    out.write(chunk)
            os.replace(temp, destination)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return destination

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        """Decrypted chunks (MEGA's chunk boundaries, at most 1 MiB); the MAC is checked after the last."""
        parts = self._parts(key)
        stream = self._run(key, lambda client: _DecryptedStream.open(client, self._newest(client, key, parts), key))
        with self._translated(key):
            yield from stream

    def exists(self, key: str) -> bool:
        parts = self._parts(key)
        return self._run(key, lambda client: bool(_Tree(client.get_files(), client.root_id).files(parts)))

    def size(self, key: str) -> int:
        parts = self._parts(key)
        return self._run(key, lambda client: int(self._newest(client, key, parts)["s"]))

    def delete(self, key: str) -> None:
        parts = self._parts(key)

        def delete(client: Mega) -> None:
            for node in _Tree(client.get_files(), client.root_id).files(parts):
                self._destroy(client, node["h"])

        self._run(key, delete)

    def delete_folder(self, prefix: str) -> int:
        """Remove the folder ``prefix`` with everything in it (MEGA deletes a folder's subtree);
        returns how many files it held."""
        parts = self._parts(prefix)

        def delete(client: Mega) -> int:
            tree = _Tree(client.get_files(), client.root_id)
            files = 0
            for folder in tree.folders(parts):
                files += tree.count_files(folder["h"])
                self._destroy(client, folder["h"])
            return files

        return self._run(prefix, delete)

    def list_objects(self) -> list[tuple[str, int, float]]:
        """Every file under the root folder: ``(key, size, uploaded at)`` (seconds since the epoch),
        for the storage sweeper. A MEGA file appears only once its upload completed."""

        def listing(client: Mega) -> list[tuple[str, int, float]]:
            tree = _Tree(client.get_files(), client.root_id)
            return [found for folder in tree.folders(self.root) for found in tree.walk(folder["h"], "")]

        return self._run("/".join(self.root), listing)

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client._http.close()

    # --- keys and folders ---------------------------------------------------

    def _parts(self, key: str) -> tuple[str, ...]:
        """The folder path and file name of ``key`` under the root; refuses traversal."""
        pieces = key.split("/")
        if not key or "\\" in key or any(piece in ("", ".", "..") for piece in pieces):
            raise StorageError(f"key {key!r} is not a relative path inside the storage root")
        try:
            return self.root + tuple(safe_part(piece, "key segment") for piece in pieces)
        except ValueError as error:
            raise StorageError(str(error)) from None

    def _newest(self, client: Mega, key: str, parts: tuple[str, ...]) -> dict[str, Any]:
        files = _Tree(client.get_files(), client.root_id).files(parts)
        if not files:
            raise ArtifactNotFound(key)
        return files[-1]

    def _ensure_folders(self, client: Mega, tree: _Tree, folders: tuple[str, ...]) -> str:
        parent = tree.root
        for name in folders:
            existing = tree.children(parent, name, _FOLDER)
            if existing:
                parent = existing[0]["h"]
                continue
            created = client._mkdir(name=name, parent_node_id=parent)
            parent = created["f"][0]["h"]
        return parent

    def _destroy(self, client: Mega, handle: str) -> None:
        try:
            client.destroy(handle)
        except RequestError as error:
            if error.code != -9:  # already gone: someone else replaced or deleted it
                raise

    # --- clients, sessions and errors ----------------------------------------

    def _run(self, key: str, operation: Callable[[Mega], T]) -> T:
        """``operation`` with this thread's client; once more after a fresh login if the session expired."""
        for attempt in (1, 2):
            client = self._client()
            try:
                with self._translated(key):
                    return operation(client)
            except _SessionExpired:
                self._forget(client)
                if attempt == 2:
                    raise StorageUnavailable("MEGA rejected a fresh session (ESID); try again later") from None
        raise AssertionError("unreachable")

    def _forget(self, client: Mega) -> None:
        self._local.client = None
        with self._clients_lock:
            if client in self._clients:
                self._clients.remove(client)
        client._http.close()

    def _client(self) -> Mega:
        client: Mega | None = getattr(self._local, "client", None)
        if client is None:
            client = self._login()
            self._local.client = client
        return client

    def _login(self) -> Mega:
        client = Mega()
        client._http.close()
        client._http = httpx.Client(
            timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0)),
            follow_redirects=True,
            transport=_ApiTransport(self.api_url),
            event_hooks={"response": [_check_response]},
        )
        retrying = Mega._api_request.retry_with(  # type: ignore[attr-defined]
            retry=retry_if_exception_type(RuntimeError),
            stop=stop_after_attempt(self.api_attempts),
            wait=wait_exponential(multiplier=self.retry_wait_s, min=self.retry_wait_s, max=30 * self.retry_wait_s),
        )
        client._api_request = types.MethodType(retrying, client)
        try:
            with self._translated(None):
                client.login(self.email, self._password)
        except RequestError as error:  # _translated lets login refusals through to here
            client._http.close()
            raise MegaLoginFailed(
                f"MEGA refused to log in {self.email}: {_LOGIN_REFUSED.get(error.code, error.message)}. "
                "Check MEGA_EMAIL and MEGA_PASSWORD."
            ) from None
        except BaseException:
            client._http.close()
            raise
        with self._clients_lock:
            self._clients.append(client)
        logger.info("logged in to MEGA as %s", self.email)
        return client

    @contextmanager
    def _translated(self, key: str | None) -> Iterator[None]:
        """Library and network failures as StorageError subclasses (``key`` None: during login)."""
        try:
            yield
        except StorageError:
            raise
        except RequestError as error:
            code = error.code if isinstance(error.code, int) else None
            if code == -15:
                raise _SessionExpired() from None
            if code in _TRANSIENT_CODES:
                raise StorageUnavailable(f"MEGA is busy ({_TRANSIENT_CODES[code]}); try again later") from None
            if key is None and code in _LOGIN_REFUSED:
                raise
            if code == -9 and key is not None:
                raise ArtifactNotFound(key) from None
            if code == -17:
                raise StorageRefused("the MEGA account is over its storage quota (EOVERQUOTA)") from None
            raise StorageRefused(f"MEGA refused the request: {error.message}") from None
        except RetryError:
            raise StorageUnavailable(
                f"MEGA answered EAGAIN (-3, congestion) {self.api_attempts} times in a row; try again later"
            ) from None
        except httpx.TimeoutException:
            raise StorageUnavailable(f"MEGA did not answer within {self.timeout_s:.0f}s") from None
        except httpx.TransportError as error:
            raise StorageUnavailable(f"cannot reach MEGA: {error}") from None
        except ValueError as error:  # the library's "empty response" and JSON decoding errors
            raise StorageUnavailable(f"MEGA sent an unreadable answer: {error}") from None


class _ApiTransport(httpx.HTTPTransport):
    """Sends the library's API requests to ``api_url`` instead of ``https://g.api.mega.co.nz``."""

    def __init__(self, api_url: httpx.URL | None) -> None:
        # Without TCP_NODELAY, a small POST whose headers and body go out in
        # two writes waits ~40 ms for the server's delayed ACK, on every call.
        super().__init__(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.api_url = api_url

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.api_url is not None and request.url.host == MEGA_API_HOST:
            request.url = request.url.copy_with(
                scheme=self.api_url.scheme,
                host=self.api_url.host,
                port=self.api_url.port,
                path=self.api_url.path.rstrip("/") + request.url.path,
            )
            request.headers["Host"] = request.url.netloc.decode("ascii")
        return super().handle_request(request)


def _check_response(response: httpx.Response) -> None:
    """HTTP-level failures the library would misread (it ignores upload answers altogether)."""
    status = response.status_code
    if status >= 500 or status == 429:
        retry_after = response.headers.get("Retry-After")
        raise StorageUnavailable(
            f"MEGA answered HTTP {status}; try again later",
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )
    request = response.request
    if request.method == "POST" and request.url.host != MEGA_API_HOST and not request.url.path.endswith("/cs"):
        # An upload URL: errors are a negative number in the body.
        text = response.read().decode("ascii", "replace").strip()
        if text.lstrip("-").isdigit() and text.startswith("-"):
            raise RequestError(int(text))


class _Tree:
    """One listing (``f``) of the account, indexed by parent."""

    def __init__(self, nodes: dict[str, dict[str, Any]], root: str) -> None:
        self.root = root
        self._children: dict[str, list[dict[str, Any]]] = {}
        for node in sorted(nodes.values(), key=lambda node: (node.get("ts", 0), node["h"])):
            self._children.setdefault(node.get("p", ""), []).append(node)

    def children(self, parent: str, name: str, kind: int) -> list[dict[str, Any]]:
        """Nodes named ``name`` of type ``kind`` in ``parent``, oldest first."""
        return [
            node
            for node in self._children.get(parent, [])
            if node["t"] == kind and isinstance(node.get("a"), dict) and node["a"].get("n") == name
        ]

    def files(self, parts: tuple[str, ...]) -> list[dict[str, Any]]:
        """Files at the path ``parts``, oldest first, searching every folder of a duplicated name."""
        parents = [self.root]
        for name in parts[:-1]:
            parents = [folder["h"] for parent in parents for folder in self.children(parent, name, _FOLDER)]
        found = [node for parent in parents for node in self.children(parent, parts[-1], _FILE)]
        return sorted(found, key=lambda node: (node.get("ts", 0), node["h"]))

    def folders(self, parts: tuple[str, ...]) -> list[dict[str, Any]]:
        """Folders at the path ``parts`` (several when two replicas created the same name)."""
        found = [self.root]
        for name in parts:
            found = [folder["h"] for parent in found for folder in self.children(parent, name, _FOLDER)]
        return [{"h": handle} for handle in found]

    def walk(self, folder: str, prefix: str) -> Iterator[tuple[str, int, float]]:
        """``(key, size, timestamp)`` of every file under ``folder``, keys relative to it after ``prefix``."""
        for node in self._children.get(folder, []):
            name = node["a"].get("n") if isinstance(node.get("a"), dict) else None
            if not name:
                continue
            if node["t"] == _FILE:
                yield prefix + name, int(node.get("s", 0)), float(node.get("ts", 0))
            elif node["t"] == _FOLDER:
                yield from self.walk(node["h"], f"{prefix}{name}/")

    def count_files(self, folder: str) -> int:
        """Files anywhere under ``folder``."""
        total = 0
        for node in self._children.get(folder, []):
            total += 1 if node["t"] == _FILE else self.count_files(node["h"]) if node["t"] == _FOLDER else 0
        return total


class _ChunkMac:
    """MEGA's file MAC, one chunk at a time (chunk boundaries from ``get_chunks``).

    Each chunk is CBC-MAC'd under the file key with the IV ``iv0 iv1 iv0 iv1``
    (zero-padded to whole blocks); the chunk MACs are chained with AES under
    the same key from a zero block; the result is folded to the two-word
    ``meta_mac`` kept in the node's key. An empty file MACs nothing: (0, 0).
    """

    def __init__(self, key: bytes, iv: tuple[int, int]) -> None:
        self.key = key
        self.chunk_iv = a32_to_str([iv[0], iv[1], iv[0], iv[1]])
        self.ecb = AES.new(key, AES.MODE_ECB)
        self.state = bytes(16)

    def add(self, chunk: bytes) -> None:
        if not chunk:
            return
        padded = chunk + bytes(-len(chunk) % 16)
        chunk_mac = AES.new(self.key, AES.MODE_CBC, self.chunk_iv).encrypt(padded)[-16:]
        self.state = self.ecb.encrypt(bytes(a ^ b for a, b in zip(self.state, chunk_mac, strict=True)))

    def meta_mac(self) -> tuple[int, int]:
        words = str_to_a32(self.state)
        return words[0] ^ words[1], words[2] ^ words[3]


def _ctr(key: bytes, iv: tuple[int, int]) -> Any:
    return AES.new(key, AES.MODE_CTR, counter=Counter.new(128, initial_value=((iv[0] << 32) + iv[1]) << 64))


def _upload(client: Mega, source: Path, parent: str, name: str) -> str:
    """Upload ``source`` as ``name`` into folder ``parent``; returns the new node's handle.

    The same wire protocol as the library's ``upload`` (``u``, chunks POSTed
    to ``<url>/<offset>``, ``p`` with encrypted attributes and key), on its
    API client and crypto helpers. Ours because the library's crashes
    (IndexError) on files whose last chunk is 16 bytes or less, MACs in a
    Python loop over every 16-byte block (~0.5 s per MB), and draws keys
    from ``random`` instead of ``secrets``.
    """
    size = source.stat().st_size
    url = client._api_request({"a": "u", "s": size})["p"]
    upload_key = [secrets.randbits(32) for _ in range(6)]
    key, iv = a32_to_str(upload_key[:4]), (upload_key[4], upload_key[5])
    cipher, mac = _ctr(key, iv), _ChunkMac(key, iv)
    completion = ""
    with source.open("rb") as handle:
        for start, length in get_chunks(size) if size else [(0, 0)]:
            plain = handle.read(length)
            if len(plain) != length:
                raise StorageRefused(f"{source} changed size while it was being uploaded")
            mac.add(plain)
            completion = client._http.post(f"{url}/{start}", content=cipher.encrypt(plain)).text
    if not completion:
        raise StorageUnavailable("MEGA did not confirm the upload (no completion handle); try again")
    meta = mac.meta_mac()
    k = upload_key
    node_key = [k[0] ^ k[4], k[1] ^ k[5], k[2] ^ meta[0], k[3] ^ meta[1], k[4], k[5], meta[0], meta[1]]
    created = client._api_request({
        "a": "p",
        "t": parent,
        "i": client.request_id,
        "n": [{
            "h": completion,
            "t": _FILE,
            "a": base64_url_encode(encrypt_attr({"n": name}, upload_key[:4])),
            "k": a32_to_base64(encrypt_key(node_key, client.master_key)),
        }],
    })
    return str(created["f"][0]["h"])


class _DecryptedStream:
    """A file node's bytes: fetched from its ``g`` URL, AES-CTR decrypted and MAC-checked, chunk by chunk."""

    def __init__(self, client: Mega, node: dict[str, Any], key: str, url: str, size: int) -> None:
        self.client = client
        self.node = node
        self.key = key
        self.url = url
        self.size = size

    @classmethod
    def open(cls, client: Mega, node: dict[str, Any], key: str) -> _DecryptedStream:
        """Ask for the node's download URL (``g``)."""
        answer = client._api_request({"a": "g", "g": 1, "n": node["h"]})
        if not isinstance(answer, dict) or "g" not in answer:
            raise ArtifactNotFound(key)
        return cls(client, node, key, answer["g"], int(answer["s"]))

    def __iter__(self) -> Iterator[bytes]:
        key, iv = a32_to_str(self.node["k"]), (self.node["iv"][0], self.node["iv"][1])
        cipher, mac = _ctr(key, iv), _ChunkMac(key, iv)
        with self.client._http.stream("GET", self.url) as response:
            if response.status_code == 404:
                raise ArtifactNotFound(self.key)
            if response.status_code != 200:
                raise StorageRefused(f"MEGA refused the download of {self.key!r} (HTTP {response.status_code})")
            reader = _ExactReader(response.iter_raw(256 * 1024))
            for _, length in get_chunks(self.size) if self.size else []:
                encrypted = reader.read(length)
                if len(encrypted) != length:
                    raise StorageUnavailable(f"the download of {self.key!r} from MEGA was cut short; try again")
                plain = cipher.decrypt(encrypted)
                mac.add(plain)
                yield plain
        if mac.meta_mac() != tuple(self.node["meta_mac"]):
            raise StorageRefused(f"{self.key!r} downloaded from MEGA does not match its MAC: the stored file is corrupt")


class _ExactReader:
    """``read(n)`` over an iterator of byte pieces: exactly ``n`` bytes unless the stream ended."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.pieces = pieces
        self.buffer = bytearray()

    def read(self, length: int) -> bytes:
        while len(self.buffer) < length:
            piece = next(self.pieces, None)
            if piece is None:
                break
            self.buffer += piece
        data = bytes(self.buffer[:length])
        del self.buffer[:length]
        return data


def storage_from_env(environ: dict[str, str] | None = None, **options: Any) -> MegaStorage:
    """``MegaStorage`` from ``MEGA_EMAIL``, ``MEGA_PASSWORD`` and (optional) ``MEGA_API_URL``."""
    env = os.environ if environ is None else environ
    return MegaStorage(env.get("MEGA_EMAIL", ""), env.get("MEGA_PASSWORD", ""), api_url=env.get("MEGA_API_URL") or None, **options)

