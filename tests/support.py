"""Helpers shared by tests that run real servers on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from api.limits import HTTP_PARSER_HEADER_BYTES


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def reserve_port() -> socket.socket:
    """A socket bound to a free loopback port (pass it to :class:`ServedApp`)."""
    sock = socket.socket()
    # without TCP_NODELAY a threaded uvicorn on a pre-bound socket adds ~40 ms per response
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ServedApp:
    """An ASGI app served by uvicorn in a thread, on a socket bound beforehand."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self.sock = sock
        self.port = int(sock.getsockname()[1])
        # the HTTP parser's limit as `python -m api` sets it: with uvicorn's default (16 KB) a long request line that
        # arrives in pieces is refused 400 by h11 before the app sees it (only when the machine is loaded)
        config = uvicorn.Config(app, log_config=None, ws="none", lifespan="on", log_level="warning",
                                h11_max_incomplete_event_size=HTTP_PARSER_HEADER_BYTES)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), 20, "app start")
        assert self.server.started, "the app failed to start"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.should_exit = True
            self.thread.join(15)
        self.sock.close()
