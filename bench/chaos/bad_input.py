"""Scenario *bad input at scale*: hostile requests while tutors' queues run.

``requests`` bad requests (malformed JSON, wrong types, huge headers,
path-traversal file names, unknown and malformed queue ids, oversized bodies,
no or forged tokens, bad parameters, unsigned webhooks) from 16 threads must
all get a 4xx with a JSON ``error`` message, never a 5xx, and the tutors'
queues (created at the same time) must complete.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.chaos.harness import ChaosStack

NAME = "bad input at scale"
UPLOAD_LIMIT = 1_000_000


def hostile_requests(api: str, token: str, count: int) -> Iterator[Callable[[httpx.Client], httpx.Response]]:
    """``count`` bad requests, cycling through every kind."""
    auth = {"Authorization": f"Bearer {token}"}
    upload = f"{api}/api/video-processing/upload"
    kinds: list[Callable[[httpx.Client], httpx.Response]] = [
        lambda c: c.post(upload, headers={**auth, "Content-Type": "application/json"}, content=b'{"attachment_id": '),
        lambda c: c.post(upload, headers=auth, json={"attachment_id": 12345}),
        lambda c: c.post(upload, headers=auth, json=["not", "an", "object"]),
        lambda c: c.get(f"{api}/api/video-processing/queue", headers={**auth, "X-Junk": "a" * 100_000}),
        lambda c: c.post(upload, headers=auth, files={"file": ("../../../etc/passwd.mp4", b"not a video at all", "video/mp4")}),
        lambda c: c.post(upload, headers=auth, files={"file": ("..\\..\\boot.ini", b"\x00" * 64, "video/mp4")}),
        lambda c: c.get(f"{api}/api/video-processing/status/0b0e5c4e-0000-4000-8000-000000000000", headers=auth),
        lambda c: c.get(f"{api}/api/video-processing/status/..%2F..%2Fetc%2Fpasswd", headers=auth),
        lambda c: c.delete(f"{api}/api/video-processing/status/not-a-queue", headers=auth),
        lambda c: c.post(upload, headers=auth, files={"file": ("big.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * (UPLOAD_LIMIT + 1024), "video/mp4")}),
        lambda c: c.get(f"{api}/api/video-processing/queue", headers={**auth, "Authorization": "Bearer not.a.jwt"}),
        lambda c: c.get(f"{api}/api/video-processing/queue"),
        lambda c: c.get(f"{api}/api/video-processing/queue", headers=auth, params={"limit": "-5", "status": "exploded"}),
        lambda c: c.post(f"{api}/api/video-processing/steps/compress", json={"queue_id": "x", "step": "compress", "attempt": 1}),
    ]
    for i in range(count):
        yield kinds[i % len(kinds)]


def run(url: str, workdir: Path, *, reduced: bool) -> dict[str, Any]:
    requests, tutors = (42, 3) if reduced else (200, 10)
    started = time.time()
    statuses: Counter[int] = Counter()
    unclear: list[str] = []
    stack = ChaosStack(url, workdir, env={
        "VIDPIPE_SIMULATED_STEP_SECONDS": "0.5",
        "VIDPIPE_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
    })
    with stack:
        app = stack.open_app()
        try:
            good = [str(app.start_processing(f"tutor-{i}", f"lecture-{i}")) for i in range(tutors)]
        finally:
            app.close()
        token = stack.token("chaos-tutor")

        def send(request: Callable[[httpx.Client], httpx.Response]) -> None:
            with httpx.Client(timeout=30) as client:
                try:
                    response = request(client)
                except httpx.HTTPError as error:  # a dropped connection is not an answer
                    statuses[0] += 1
                    unclear.append(f"no answer: {error!r}")
                    return
            statuses[response.status_code] += 1
            try:
                message = response.json().get("error")
            except (ValueError, AttributeError):
                message = response.text.strip()  # e.g. the HTTP server's own "Invalid HTTP request received."
            if not (400 <= response.status_code < 500 and message):
                unclear.append(f"{response.status_code} {response.text[:120]}")

        recovery_started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(send, hostile_requests(stack.api, token, requests)))
        stack.wait_terminal(good, timeout=120)
        recovery = time.monotonic() - recovery_started
    row = stack.check(started)
    row.update(
        scenario=NAME,
        server_errors=sum(v for k, v in statuses.items() if k >= 500),
        recovery_seconds=round(recovery, 2),
        details={
            "hostile_requests": requests,
            "answers": dict(sorted((str(k), v) for k, v in statuses.items())),
            "not_4xx_with_message": len(unclear),
            "examples_of_unclear_answers": unclear[:5],
        },
        problems=[f"{len(unclear)} answers were not a 4xx with a message"] if unclear else [],
    )
    return row
