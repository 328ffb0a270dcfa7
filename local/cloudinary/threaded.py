"""The server in a background thread on a loopback port: for tests and embedded runs."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from local.cloudinary.app import OutageSwitch, create_app
from local.cloudinary.settings import Settings


class ThreadedCloudinary:
    """``create_app(settings)`` served by uvicorn on a pre-bound ``127.0.0.1`` socket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, log_config=None, ws="none", lifespan="on", log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            self.stop()
            raise RuntimeError("the local Cloudinary server did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def outage(self) -> OutageSwitch:
        """``outage.set(n)``: the next n requests answer 503."""
        switch: OutageSwitch = self.app.state.outage
        return switch

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(10)
        self._socket.close()

    def __enter__(self) -> ThreadedCloudinary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
