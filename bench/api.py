"""Benchmark of the public API's read path, on SQLite and Postgres.

Each store gets a fresh database, the local QStash server and the vidpipe
API as separate processes (``python -m local.qstash``, ``python -m api``;
simulated steps), and from this process, over loopback HTTP with bearer
tokens:

- status polling: ``--pollers`` concurrent clients (200) each request
  ``GET /api/video-processing/status/{id}`` of one of the tutor's queues in a
  loop for ``--seconds``; requests per second and latency p50/p99;
- SSE fan-out: ``--subscribers`` clients (200) open
  ``GET .../status/{id}/stream`` of one queue, which then runs its four
  steps (``--step-seconds`` each); per subscriber, every event in order is
  checked, and the delay from a status change (its ``updated_at``) to its
  arrival at each subscriber is measured (p50/p99), along with the time
  from the queue's completion until the last stream ended.

Results are printed and written to ``bench/results/api.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from api.settings import Settings
from api.token import mint
from bench.core import database, percentile
from bench.pipeline import launch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "api.json"
OWNER = "bench-tutor"
PREFIX = "/api/video-processing"
VIDEO = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 64


def start_stack(url: str, workdir: Path, step_seconds: float, streams: int = 16) -> tuple[list[subprocess.Popen[bytes]], str]:
    """The local QStash server and the API with simulated steps of ``step_seconds``, letting the
    one bench tutor hold ``streams`` live streams (the fan-out is one caller's)."""
    return launch(
        url, workdir,
        VIDPIPE_MAX_STREAMS_PER_CALLER=str(max(16, streams)),
        VIDPIPE_MAX_STREAMS=str(max(1000, streams)),
        VIDPIPE_SIMULATED_STEP_SECONDS=str(step_seconds),
        VIDPIPE_PROJECTION_POLL_SECONDS="0.02",
        VIDPIPE_STORAGE_DIR=str(workdir / "storage"),
    )


async def upload(client: httpx.AsyncClient, seed: int) -> str:
    response = await client.post(f"{PREFIX}/upload", files={"file": (f"bench-{seed}.mp4", VIDEO + seed.to_bytes(4, "big"), "video/mp4")})
    response.raise_for_status()
    return str(response.json()["queue_id"])


async def wait_terminal(client: httpx.AsyncClient, qid: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = (await client.get(f"{PREFIX}/status/{qid}")).json()
        if row["status"] in ("completed", "failed", "cancelled"):
            return dict(row)
        await asyncio.sleep(0.05)
    raise TimeoutError(f"queue {qid} did not finish within {timeout}s")


class RawConnection:
    """A minimal keep-alive HTTP/1.1 client: the load generator must cost less than the server."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.headers = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\n{self.headers}".encode())
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def poll_status(base_url: str, token: str, queue_ids: list[str], pollers: int, seconds: float) -> dict[str, float]:
    url = httpx.URL(base_url)
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def poller(i: int) -> None:
        nonlocal errors
        path = f"{PREFIX}/status/{queue_ids[i % len(queue_ids)]}"
        connection = RawConnection(url.host, url.port or 80, token)
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                if await connection.get(path) != 200:
                    errors += 1
                latencies.append(time.perf_counter() - started)
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(poller(i) for i in range(pollers)))
    elapsed = time.perf_counter() - started
    return {
        "pollers": pollers,
        "requests": len(latencies),
        "errors": errors,
        "requests_per_second": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


async def subscribe(client: httpx.AsyncClient, qid: str, connected: asyncio.Event, counter: list[int],
                    total: int) -> list[tuple[str, dict[str, Any], float]]:
    received: list[tuple[str, dict[str, Any], float]] = []
    async with client.stream("GET", f"{PREFIX}/status/{qid}/stream", timeout=300) as response:
        response.raise_for_status()
        counter[0] += 1
        if counter[0] == total:
            connected.set()
        event = "message"
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                received.append((event, json.loads(line.split(":", 1)[1]), time.time()))
    return received


async def fan_out(client: httpx.AsyncClient, subscribers: int) -> dict[str, float]:
    qid = await upload(client, 10_000)
    connected, counter = asyncio.Event(), [0]
    tasks = [asyncio.create_task(subscribe(client, qid, connected, counter, subscribers)) for _ in range(subscribers)]
    connect_started = time.perf_counter()
    await asyncio.wait_for(connected.wait(), 120)
    connect_seconds = time.perf_counter() - connect_started
    streams = await asyncio.gather(*tasks)
    ended = time.time()
    trail = (await client.get(f"{PREFIX}/status/{qid}/events")).json()["events"]
    expected = [e["position"] for e in trail]
    delays, complete = [], 0
    finished_at = None
    for stream in streams:
        positions = [data["position"] for event, data, _ in stream if event == "timeline"]
        complete += positions == expected
        for event, data, at in stream:
            if event == "status":
                changed = datetime.fromisoformat(data["updated_at"]).timestamp()
                if data["status"] == "completed":
                    finished_at = changed
                if data["version"] > 1:  # the first status replays history the client joined after
                    delays.append(max(0.0, at - changed))
    return {
        "subscribers": subscribers,
        "events_per_subscriber": len(expected),
        "subscribers_with_every_event_in_order": complete,
        "connect_all_seconds": connect_seconds,
        "delivery_p50_ms": percentile(delays, 0.5) * 1000 if delays else 0.0,
        "delivery_p99_ms": percentile(delays, 0.99) * 1000 if delays else 0.0,
        "completed_to_last_stream_end_ms": (ended - finished_at) * 1000 if finished_at else 0.0,
    }


async def run(base_url: str, pollers: int, seconds: float, subscribers: int, queues: int) -> dict[str, Any]:
    token = mint(Settings(), OWNER, "tutor")
    limits = httpx.Limits(max_connections=max(pollers, subscribers) + 10, max_keepalive_connections=max(pollers, subscribers) + 10)
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"},
                                 limits=limits, timeout=60) as client:
        queue_ids = [await upload(client, i) for i in range(queues)]
        for qid in queue_ids:
            await wait_terminal(client, qid)
        polling = await poll_status(base_url, token, queue_ids, pollers, seconds)
        fan = await fan_out(client, subscribers)
    return {"status_polling": polling, "sse_fan_out": fan}


def measure(kind: str, pollers: int = 200, seconds: float = 10.0, subscribers: int = 200,
            step_seconds: float = 1.0, queues: int = 10) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="vidpipe-bench-api-"))
    try:
        with database(kind) as url:
            processes, base_url = start_stack(url, workdir, step_seconds, subscribers)
            try:
                return asyncio.run(run(base_url, pollers, seconds, subscribers, queues))
            finally:
                for process in processes:
                    process.terminate()
                    process.wait(15)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="benchmark the public API's read path")
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--step-seconds", type=float, default=1.0)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    console = Console(width=shutil.get_terminal_size((140, 24)).columns)
    results = {}
    for kind in args.stores.split(","):
        console.print(f"measuring the API read path on {kind}...")
        results[kind] = measure(kind, args.pollers, args.seconds, args.subscribers, args.step_seconds)
    table = Table(title="vidpipe API read path")
    for column in ("store", f"status req/s ({args.pollers} pollers)", "p50 (ms)", "p99 (ms)",
                   f"SSE subscribers in order / {args.subscribers}", "event delivery p50 (ms)", "p99 (ms)",
                   "completed → last stream end (ms)"):
        table.add_column(column, justify="right")
    for kind, r in results.items():
        p, f = r["status_polling"], r["sse_fan_out"]
        table.add_row(kind, f"{p['requests_per_second']:.0f}", f"{p['p50_ms']:.1f}", f"{p['p99_ms']:.1f}",
                      str(f["subscribers_with_every_event_in_order"]), f"{f['delivery_p50_ms']:.0f}",
                      f"{f['delivery_p99_ms']:.0f}", f"{f['completed_to_last_stream_end_ms']:.0f}")
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "measured_at": datetime.now(timezone.utc).isoformat(), "python": sys.version.split()[0],
        "cpus": os.cpu_count(), "args": vars(args), "results": results,
    }, indent=2))
    console.print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
