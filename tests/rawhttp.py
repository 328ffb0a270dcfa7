"""Raw HTTP/1.1 over asyncio streams, for tests that abuse a server.

httpx cannot stop sending a body when the server answers early, nor hold
thousands of connections cheaply; these helpers can. A body is generated on
the fly from one small chunk, so a test can offer gigabytes without holding
them, and stops sending as soon as the answer arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

CHUNK = 64 * 1024


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int = 0
    """Body bytes the client had handed to the socket when it stopped."""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_answer(reader: asyncio.StreamReader, *, body: bool = True) -> Answer:
    """Status line and headers; the body too when it has a Content-Length and ``body``."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection without answering")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    content = b""
    if body and "content-length" in headers:
        content = await reader.readexactly(int(headers["content-length"]))
    return Answer(status, headers, content)


async def post_endless(port: int, path: str, headers: dict[str, str], total: int, *,
                       chunked: bool = False, timeout: float = 60) -> Answer:
    """POST a ``total``-byte body (random bytes, generated chunk by chunk), stopping as soon
    as the server answers; ``chunked`` sends it without a Content-Length."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(total)}
    writer.write(head("POST", path, {**headers, **framing}))
    answer = asyncio.create_task(read_answer(reader))
    sent = 0
    piece = os.urandom(CHUNK)
    frame = (f"{CHUNK:x}\r\n".encode() + piece + b"\r\n") if chunked else piece
    try:
        while sent < total and not answer.done() and not writer.transport.is_closing():
            writer.write(frame)
            sent += CHUNK
            drained = asyncio.ensure_future(writer.drain())
            await asyncio.wait({drained, answer}, return_when=asyncio.FIRST_COMPLETED)
            if not drained.done():
                drained.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await drained
    except ConnectionError:
        pass  # the server closed the connection after answering
    try:
        result = await asyncio.wait_for(answer, timeout)
    except ConnectionResetError:
        # The server answered and closed while our body was still arriving: its kernel resets
        # the connection, and ours may drop the answer it had already received (a TCP race
        # every client of an early-refusing server can meet). Status 0 says so.
        result = Answer(0, {}, b"", extra={"reset": True})
    finally:
        writer.transport.abort()  # drop what is still buffered: the answer is in
    result.sent, result.seconds = sent, time.monotonic() - started
    return result


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    """A field of ``/proc/<pid>/status`` in KiB (VmRSS now, VmHWM peak)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field_name} for process {pid}")


def reset_peak_rss(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux ≥ 4.0); False where not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False
