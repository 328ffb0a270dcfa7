"""Benchmark of the QStash step pipeline's own overhead, on SQLite and Postgres.

Each store gets a fresh database, a local QStash-compatible server process
(``python -m local.qstash``) and a vidpipe API process (``python -m api``)
whose four steps do no work (the simulated provider with 0 s), with the
dispatcher and projection runner inside the API process (the embedded
layout). From this process:

- end-to-end latency: a queue is created (the command an upload runs), then
  its row is polled in ``video_processing_queue_status`` until ``completed``;
  one queue at a time, p50/p99 over ``--latency-queues``;
- throughput: ``--concurrency`` uploaders create ``--throughput-queues``
  queues as fast as they can; queues/s from the first creation to the last
  completion.

Every message goes publish → QStash server → signed delivery → handler →
event store → dispatcher → publish, over loopback HTTP. Results are printed
and written to ``bench/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from bench.core import database, percentile
from domain import VideoProcessing
from projections.database import DatabaseUrl
from projections.views import open_view

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "pipeline.json"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def start_stack(url: str, workdir: Path) -> list[subprocess.Popen[bytes]]:
    return launch(url, workdir)[0]


def launch(url: str, workdir: Path, **overrides: str) -> tuple[list[subprocess.Popen[bytes]], str]:
    """The local QStash server and the API (simulated steps) as processes; returns them and the API's URL."""
    qstash_port, api_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PORT": str(api_port),
        "QSTASH_URL": f"http://127.0.0.1:{qstash_port}",
        "VIDPIPE_STEP_PROVIDERS": "simulated",
        "VIDPIPE_SIMULATED_STEP_SECONDS": "0",
        "VIDPIPE_PROJECTION_POLL_SECONDS": "0.01",
        "LOG_LEVEL": "WARNING",
        **overrides,
    }
    with (workdir / "stack.log").open("ab") as log:
        return _spawn(env, log, qstash_port, api_port, workdir), f"http://127.0.0.1:{api_port}"


def _spawn(env: dict[str, str], log: object, qstash_port: int, api_port: int, workdir: Path) -> list[subprocess.Popen[bytes]]:
    qstash = subprocess.Popen(
        [sys.executable, "-m", "local.qstash", "--port", str(qstash_port),
         "--db", str(workdir / "qstash.sqlite3"), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    wait_http(f"http://127.0.0.1:{qstash_port}/v2/dlq")
    api = subprocess.Popen([sys.executable, "-m", "api"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{api_port}/healthz")
    return [api, qstash]


def wait_completed(view: object, qid: str, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = view.fetchone(  # type: ignore[attr-defined]
            "SELECT status FROM video_processing_queue_status WHERE queue_id = :id", {"id": qid}
        )
        if row is not None and row["status"] in ("completed", "failed", "cancelled"):
            if row["status"] != "completed":
                raise RuntimeError(f"queue {qid} ended {row['status']}")
            return time.perf_counter()
        time.sleep(0.005)
    raise TimeoutError(f"queue {qid} did not complete within {timeout}s")


def measure(kind: str, latency_queues: int, throughput_queues: int, concurrency: int) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="vidpipe-bench-pipeline-"))
    with database(kind) as url:
        processes = start_stack(url, workdir)
        env = DatabaseUrl.parse(url).event_store_env()
        app = VideoProcessing(env=env)
        view = open_view(env)
        try:
            latencies = []
            for i in range(latency_queues):
                started = time.perf_counter()
                qid = str(app.start_processing(f"tutor-{i}", f"lecture-{i}"))
                latencies.append(wait_completed(view, qid) - started)

            lock = threading.Lock()
            created: list[str] = []

            def upload(i: int) -> None:
                qid = str(app.start_processing(f"tutor-{i % concurrency}", f"load-{i}"))
                with lock:
                    created.append(qid)

            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(upload, range(throughput_queues)))
            finished = max(wait_completed(view, qid, timeout=300) for qid in created)
            elapsed = finished - started
        finally:
            for process in processes:
                process.terminate()
                process.wait(15)
            view.close()
            app.close()
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "latency_queues": latency_queues,
        "latency_p50_ms": percentile(latencies, 0.5) * 1000,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000,
        "throughput_queues": throughput_queues,
        "concurrency": concurrency,
        "queues_per_second": throughput_queues / elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="benchmark the QStash step pipeline")
    parser.add_argument("--latency-queues", type=int, default=30)
    parser.add_argument("--throughput-queues", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    console = Console(width=shutil.get_terminal_size((120, 24)).columns)
    results = {}
    for kind in args.stores.split(","):
        console.print(f"measuring the pipeline on {kind}...")
        results[kind] = measure(kind, args.latency_queues, args.throughput_queues, args.concurrency)
    table = Table(title="vidpipe pipeline benchmark (four no-op steps)")
    for column in ("store", "upload→completed p50 (ms)", "p99 (ms)", f"queues/s at {args.concurrency} concurrent"):
        table.add_column(column, justify="right")
    for kind, r in results.items():
        table.add_row(kind, f"{r['latency_p50_ms']:.0f}", f"{r['latency_p99_ms']:.0f}", f"{r['queues_per_second']:.2f}")
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "measured_at": datetime.now(timezone.utc).isoformat(), "python": sys.version.split()[0],
        "results": results,
    }, indent=2))
    console.print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
