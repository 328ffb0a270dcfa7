"""Test harness for the local QStash server: the server on a loopback port
(in a thread, or as a ``python -m local.qstash`` subprocess), a recording
destination HTTP server that verifies signatures with ``qstash.Receiver``,
and the official SDK client pointed at the server.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from qstash import Receiver
from qstash.errors import SignatureError

from local.qstash import Settings, create_app
from tests import support
from tests.support import ServedApp, reserve_port
from local.qstash.settings import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY, DEV_TOKEN

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = DEV_TOKEN


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """:func:`tests.support.wait_until` with these tests' shorter default timeout."""
    return support.wait_until(predicate, timeout, what)


# --- the destination --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reply:
    """One scripted answer of the destination."""

    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


@dataclasses.dataclass(frozen=True)
class Received:
    """One request the destination got, and whether its signature verified."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    signature_error: str | None


class Destination:
    """A real HTTP server on loopback that answers from a script and records requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Reply]] = {}
        self.received: list[Received] = []
        self.receiver = Receiver(DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` with ``replies`` in order, then 200."""
        with self._lock:
            self._scripts[path] = list(replies)

    def requests_to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 5.0) -> list[Received]:
        wait_until(lambda: len(self.requests_to(path)) >= count, timeout, f"{count} request(s) to {path}")
        return self.requests_to(path)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            script = self._scripts.get(path, [])
            return script.pop(0) if script else Reply()

    def _record(self, request: Received) -> None:
        with self._lock:
            self.received.append(request)

    def _verify(self, headers: dict[str, str], body: bytes, path: str) -> str | None:
        try:
            self.receiver.verify(
                signature=headers.get("upstash-signature", ""),
                body=body.decode("utf-8"),
                url=self.url(path),
                clock_tolerance=5,
            )
        except SignatureError as error:
            return str(error)
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        destination = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                destination._record(
                    Received(
                        method=self.command,
                        path=self.path,
                        headers=headers,
                        body=body,
                        at=time.time(),
                        signature_error=destination._verify(headers, body, self.path),
                    )
                )
                reply = destination._next_reply(self.path)
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


# --- the QStash server --------------------------------------------------------


class ThreadedServer(ServedApp):
    """The app served by uvicorn in a background thread on a pre-bound loopback socket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__(create_app(settings), reserve_port())


def local_qstash(db_path: Path, **overrides: Any) -> ThreadedServer:
    """The local QStash server in a thread with the dev server's token and keys, polling every 50 ms."""
    fields: dict[str, Any] = {
        "db_path": db_path,
        "token": TOKEN,
        "current_signing_key": DEV_CURRENT_SIGNING_KEY,
        "next_signing_key": DEV_NEXT_SIGNING_KEY,
        "poll_interval_s": 0.05,
    }
    return ThreadedServer(Settings(**{**fields, **overrides}))


# --- the server as a separate process -------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ProcessServer:
    """``python -m local.qstash`` as a child process, so it can be SIGKILLed."""

    def __init__(self, db_path: Path, log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        env = {**os.environ, "QSTASH_TOKEN": TOKEN, "PYTHONPATH": str(REPO_ROOT)}
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local.qstash", "--port", str(self.port), "--db", str(db_path)],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, 15, "the server process to answer")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"server process exited with {self.process.returncode}")
        try:
            response = httpx.get(f"{self.url}/v2/dlq", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=1)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
