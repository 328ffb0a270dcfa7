"""Oversized request headers get a 431 with a message from the real server process.

``python -m api`` (uvicorn + h11, as deployed) is started on SQLite; the
headers are sent over a raw socket in small TCP segments, the way a large head
often arrives, which is the path where h11's own 16 KiB buffer limit used to
answer "Invalid HTTP request received." and reset the connection instead of
letting the 431 through.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from api.limits import MAX_HEADER_BYTES
from bench.pipeline import launch


def send_in_segments(host: str, port: int, head: bytes, segment: int = 2048) -> bytes:
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(head), segment):
            conn.sendall(head[start:start + segment])
            time.sleep(0.002)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 4 + _length(answer):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_a_100_kb_header_arriving_in_pieces_gets_431_with_a_message(tmp_path: Path) -> None:
    processes, api = launch(f"sqlite:///{tmp_path}/vidpipe.db", tmp_path)
    try:
        url = urlsplit(api)
        head = (
            f"GET /api/video-processing/queue HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"X-Junk: {'a' * 100_000}\r\nConnection: close\r\n\r\n"
        ).encode()
        for _ in range(5):
            answer = send_in_segments(url.hostname or "127.0.0.1", url.port or 80, head)
            status_line, _, rest = answer.partition(b"\r\n")
            assert status_line.split()[1] == b"431", answer[:200]
            body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
            assert f"the limit is {MAX_HEADER_BYTES}" in body["error"]
    finally:
        for process in processes:
            process.terminate()
            process.wait(15)
