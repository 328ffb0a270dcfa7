"""The fake server's file system: nodes (as MEGA lists them), uploads in progress, stored bytes.

The server only ever holds what MEGA holds: encrypted file contents (on disk,
``blobs/<handle>``), attributes and keys it cannot read. Node metadata lives
in ``nodes.json`` next to them, rewritten after every change, so a restarted
server still has its files. Every method is called under :attr:`Drive.lock`.

Error numbers are MEGA's: ``-2`` EARGS, ``-7`` ERANGE, ``-9`` ENOENT,
``-10`` ECIRCULAR, ``-11`` EACCESS, ``-13`` EINCOMPLETE, ``-17`` EOVERQUOTA.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from local.mega.crypto import b64encode

EARGS, ERANGE, ENOENT, ECIRCULAR, EACCESS, EINCOMPLETE, EOVERQUOTA = -2, -7, -9, -10, -11, -13, -17
FILE, FOLDER, ROOT, INBOX, TRASH = 0, 1, 2, 3, 4


@dataclass
class Node:
    h: str
    p: str
    u: str
    t: int
    a: str = ""
    k: str = ""
    s: int | None = None
    ts: int = 0

    def listed(self) -> dict[str, Any]:
        """The node as ``f`` and ``p`` return it."""
        data = {"h": self.h, "p": self.p, "u": self.u, "t": self.t, "a": self.a, "k": self.k, "ts": self.ts}
        if self.t == FILE:
            data["s"] = self.s
        return data


@dataclass
class Upload:
    owner: str
    size: int
    received: int = 0
    completion: str | None = None


class Drive:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.blobs = self.data_dir / "blobs"
        self.incoming = self.data_dir / "incoming"
        self.lock = threading.RLock()
        self.nodes: dict[str, Node] = {}
        self.uploads: dict[str, Upload] = {}
        self.completions: dict[str, str] = {}
        self.downloads: dict[str, str] = {}

    # --- persistence -------------------------------------------------------

    def open(self) -> None:
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)
        for leftover in self.incoming.iterdir():
            leftover.unlink()
        index = self.data_dir / "nodes.json"
        if index.exists():
            self.nodes = {item["h"]: Node(**item) for item in json.loads(index.read_text())}

    def _save(self) -> None:
        index = self.data_dir / "nodes.json"
        temp = index.with_suffix(".tmp")
        temp.write_text(json.dumps([asdict(node) for node in self.nodes.values()]))
        os.replace(temp, index)

    # --- the tree ----------------------------------------------------------

    def ensure_roots(self, user: str) -> None:
        """Cloud Drive, Inbox and Rubbish Bin of a user, created on first sight."""
        present = {node.t for node in self.nodes.values() if node.u == user and node.t in (ROOT, INBOX, TRASH)}
        for kind in (ROOT, INBOX, TRASH):
            if kind not in present:
                handle = self._new_handle()
                self.nodes[handle] = Node(h=handle, p="", u=user, t=kind, ts=int(time.time()))
        self._save()

    def listing(self, user: str) -> list[dict[str, Any]]:
        return [node.listed() for node in self.nodes.values() if node.u == user]

    def used_bytes(self, user: str) -> int:
        return sum(node.s or 0 for node in self.nodes.values() if node.u == user and node.t == FILE)

    def add(self, user: str, parent: str, specs: list[dict[str, Any]]) -> list[dict[str, Any]] | int:
        """The ``p`` command: new folders, or files from completed uploads."""
        target = self._owned(user, parent)
        if isinstance(target, int):
            return target
        if target.t == FILE or not isinstance(specs, list) or not specs:
            return EARGS
        created = []
        for spec in specs:
            node = self._node_from(user, target.h, spec)
            if isinstance(node, int):
                return node
            self.nodes[node.h] = node
            created.append(node.listed())
        self._save()
        return created

    def _node_from(self, user: str, parent: str, spec: dict[str, Any]) -> Node | int:
        if not isinstance(spec, dict) or spec.get("t") not in (FILE, FOLDER) or not spec.get("a") or not spec.get("k"):
            return EARGS
        handle = self._new_handle()
        node = Node(h=handle, p=parent, u=user, t=spec["t"], a=spec["a"], k=f"{user}:{spec['k']}", ts=int(time.time()))
        if node.t == FOLDER:
            return node
        token = self.completions.get(str(spec.get("h")))
        upload = self.uploads.get(token or "")
        if token is None or upload is None or upload.owner != user:
            return ENOENT
        if upload.received != upload.size:
            return EINCOMPLETE
        os.replace(self.incoming / token, self.blobs / handle)
        del self.uploads[token], self.completions[str(spec["h"])]
        node.s = upload.size
        return node

    def remove(self, user: str, handle: str) -> int:
        """The ``d`` command: the node and everything under it, for good."""
        node = self._owned(user, handle)
        if isinstance(node, int):
            return node
        if node.t != FILE and node.t != FOLDER:
            return EACCESS
        for victim in self._subtree(node.h):
            del self.nodes[victim.h]
            (self.blobs / victim.h).unlink(missing_ok=True)
        self._save()
        return 0

    def move(self, user: str, handle: str, target: str) -> int:
        """The ``m`` command (also how clients "delete": a move to the Rubbish Bin)."""
        node, parent = self._owned(user, handle), self._owned(user, target)
        if isinstance(node, int):
            return node
        if isinstance(parent, int):
            return parent
        if node.t not in (FILE, FOLDER) or parent.t == FILE:
            return EARGS
        if any(item.h == parent.h for item in self._subtree(node.h)):
            return ECIRCULAR
        node.p = parent.h
        self._save()
        return 0

    def set_attributes(self, user: str, handle: str, attributes: str, key: str | None) -> int:
        node = self._owned(user, handle)
        if isinstance(node, int):
            return node
        node.a = attributes
        if key:
            node.k = f"{user}:{key}"
        self._save()
        return 0

    # --- transfers ---------------------------------------------------------

    def start_upload(self, user: str, size: int, quota: int | None) -> str | int:
        if not isinstance(size, int) or size < 0:
            return EARGS
        if quota is not None and self.used_bytes(user) + size > quota:
            return EOVERQUOTA
        token = b64encode(secrets.token_bytes(24))
        self.uploads[token] = Upload(owner=user, size=size)
        (self.incoming / token).touch()
        return token

    def write_chunk(self, token: str, offset: int, data: bytes) -> str | int:
        """Bytes of an upload at ``offset``; the completion handle once every byte arrived."""
        upload = self.uploads.get(token)
        if upload is None:
            return ENOENT
        if offset < 0 or offset + len(data) > upload.size or (not data and upload.size):
            return ERANGE
        with (self.incoming / token).open("r+b") as blob:
            blob.seek(offset)
            blob.write(data)
        upload.received += len(data)
        if upload.received < upload.size:
            return ""
        if upload.completion is None:
            upload.completion = b64encode(secrets.token_bytes(27))
            self.completions[upload.completion] = token
        return upload.completion

    def start_download(self, user: str, handle: str) -> tuple[str, Node] | int:
        node = self._owned(user, handle)
        if isinstance(node, int):
            return node
        if node.t != FILE:
            return EARGS
        token = b64encode(secrets.token_bytes(24))
        self.downloads[token] = node.h
        return token, node

    def download_path(self, token: str) -> Path | None:
        handle = self.downloads.get(token)
        if handle is None or handle not in self.nodes:
            return None
        return self.blobs / handle

    # --- helpers -----------------------------------------------------------

    def _owned(self, user: str, handle: str) -> Node | int:
        node = self.nodes.get(str(handle))
        if node is None:
            return ENOENT
        if node.u != user:
            return EACCESS
        return node

    def _subtree(self, handle: str) -> list[Node]:
        found = [self.nodes[handle]]
        for node in found:
            found.extend(child for child in self.nodes.values() if child.p == node.h)
        return found

    def _new_handle(self) -> str:
        while True:
            handle = b64encode(secrets.token_bytes(6))
            if handle not in self.nodes:
                return handle
