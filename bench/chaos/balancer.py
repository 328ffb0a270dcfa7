"""A round-robin TCP load balancer on loopback, for scenarios with several API replicas.

Production runs N replicas of ``python -m api`` behind a load balancer and
points ``NEXTAUTH_URL`` at it, so QStash delivers every step message to the
balancer's URL and the signature names that URL whichever replica answers.
This is that balancer, small: each new connection goes to the next backend
(one that refuses is skipped), bytes are relayed both ways until either side
closes. Per-connection, like an L4 balancer: a client's keep-alive connection
stays with one replica, and concurrent connections are spread.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter

from bench.chaos.harness import free_port

CHUNK = 64 * 1024


class RoundRobinBalancer:
    """Listens on ``port`` (a free one by default) and spreads connections over ``backends`` (ports)."""

    def __init__(self, backends: list[int], port: int | None = None) -> None:
        self.backends = backends
        self.port = port or free_port()
        self.connections: Counter[int] = Counter()
        self._next = itertools.cycle(range(len(backends)))
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="balancer", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RoundRobinBalancer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True), self._loop
        ).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> RoundRobinBalancer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in self.backends:
            port = self.backends[next(self._next)]
            try:
                streams = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue  # that replica is down: the next one
            self.connections[port] += 1
            return streams
        return None

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        backend = await self._connect()
        if backend is None:  # no replica answers: the client sees a closed connection, as behind a real one
            client_writer.close()
            return
        backend_reader, backend_writer = backend
        await asyncio.gather(
            _pipe(client_reader, backend_writer), _pipe(backend_reader, client_writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
