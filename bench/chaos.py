"""Fault injection (``make chaos``): the service keeps its promises under bad input.

Every scenario runs on Postgres against real processes (the local QStash
server and the API, as ``make run`` starts them) and ends with the same
invariant checks (:func:`check_invariants`):

- every queue is ``completed``, ``failed`` with a reason, or ``cancelled``;
- no step has more than one ``StepCompleted`` (duplicates);
- the projections equal a rebuild from event 0 (projection mismatches);
- no artifact a completed step recorded is missing from storage (lost artifacts);
- no ffmpeg started by the run is still alive (orphans).

Scenarios so far (issue 7 lists the rest: process deaths, QStash and Postgres
restarts, sleeping model servers, load):

- **bad input at scale**: while tutors' queues run, ``--requests`` hostile
  requests (malformed JSON, wrong types, huge headers, path-traversal file
  names, unknown and malformed queue ids, oversized bodies, no or forged
  tokens, unsigned webhooks) must all get a 4xx with a JSON ``error`` message,
  never a 5xx, and the tutors' queues must complete.

Prints a table and writes ``bench/results/chaos.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from api.settings import Settings
from api.token import mint
from bench.core import database
from bench.pipeline import launch
from domain import VideoProcessing
from handlers.storage.local import LocalStorage
from projections.database import DatabaseUrl
from projections.follower import EventFollower
from projections.queue_status import QueueStatusProjection, QueueStatusReader
from projections.views import open_view

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "chaos.json"
ARTIFACT_OUTPUTS = ("video", "audio", "transcript_json", "transcript_srt", "transcript_vtt", "transcript_txt")
UPLOAD_LIMIT = 1_000_000


def check_invariants(url: str, storage_dir: Path, started_after: float) -> dict[str, Any]:
    """The checks every scenario ends with, read from the database and storage."""
    env = DatabaseUrl.parse(url).event_store_env()
    app, view = VideoProcessing(env=env), open_view(env)
    storage = LocalStorage(storage_dir)
    try:
        reader = QueueStatusReader(view)
        follower = EventFollower(app, view, QueueStatusProjection())
        follower.catch_up()
        rows = view.fetchall("SELECT id, status, error FROM video_processing_queue")
        outcomes: Counter[str] = Counter()
        duplicates = lost = checked = 0
        for row in rows:
            status = row["status"]
            outcomes[status if status != "failed" or row["error"] else "failed without a reason"] += 1
            completions = Counter(e.step for e in app.queue_events(row["id"]) if type(e).__name__ == "StepCompleted")
            duplicates += sum(n - 1 for n in completions.values() if n > 1)
            for step in app.get_queue(row["id"]).steps:
                for name, key in step.outputs.items():
                    if name in ARTIFACT_OUTPUTS and status == "completed":
                        checked += 1
                        lost += not storage.exists(key)
        live = reader.table_rows()
        follower.rebuild()
        mismatches = sum(
            1 for table in live for a, b in zip(live[table], reader.table_rows()[table], strict=False) if a != b
        ) + sum(abs(len(live[t]) - len(reader.table_rows()[t])) for t in live)
    finally:
        view.close()
        app.close()
    return {
        "queues": len(rows),
        "completed": outcomes["completed"],
        "failed_with_reason": outcomes["failed"],
        "cancelled": outcomes["cancelled"],
        "unfinished_or_unexplained": len(rows) - outcomes["completed"] - outcomes["failed"] - outcomes["cancelled"],
        "duplicates": duplicates,
        "artifacts_checked": checked,
        "lost_artifacts": lost,
        "projection_mismatches": mismatches,
        "orphan_ffmpeg": len(_ffmpeg_started_after(started_after)),
    }


def _ffmpeg_started_after(moment: float) -> list[int]:
    found = subprocess.run(["pgrep", "-x", "ffmpeg"], capture_output=True, text=True).stdout.split()
    boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])
    ticks = 100.0
    pids = []
    for pid in found:
        try:
            start = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks + boot
        except (OSError, IndexError, ValueError):
            continue
        if start >= moment:
            pids.append(int(pid))
    return pids


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


def bad_input_at_scale(url: str, workdir: Path, requests: int, tutors: int) -> dict[str, Any]:
    started = time.time()
    storage_dir = workdir / "storage"
    processes, api = launch(
        url, workdir,
        VIDPIPE_SIMULATED_STEP_SECONDS="0.5",
        VIDPIPE_STORAGE_DIR=str(storage_dir),
        VIDPIPE_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT),
    )
    env = DatabaseUrl.parse(url).event_store_env()
    app = VideoProcessing(env=env)
    statuses: Counter[int] = Counter()
    unclear: list[str] = []
    try:
        good = [str(app.start_processing(f"tutor-{i}", f"lecture-{i}")) for i in range(tutors)]
        token = mint(Settings(), user="chaos-tutor", role="tutor")

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
            list(pool.map(send, hostile_requests(api, token, requests)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = [app.get_queue(q).is_terminal for q in good]
            if all(done):
                break
            time.sleep(0.2)
        recovery = time.monotonic() - recovery_started
    finally:
        for process in processes:
            process.terminate()
            process.wait(15)
        app.close()
    row = check_invariants(url, storage_dir, started)
    row.update(
        scenario="bad input at scale",
        hostile_requests=requests,
        answers=dict(sorted((str(k), v) for k, v in statuses.items())),
        server_errors=sum(v for k, v in statuses.items() if k >= 500),
        not_4xx_with_message=len(unclear),
        examples=unclear[:5],
        recovery_seconds=round(recovery, 2),
    )
    return row


def run(requests: int, tutors: int) -> list[dict[str, Any]]:
    rows = []
    with database("postgres") as url:
        workdir = Path(tempfile.mkdtemp(prefix="vidpipe-chaos-"))
        try:
            rows.append(bad_input_at_scale(url, workdir, requests, tutors))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description="fault injection against the running service")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--tutors", type=int, default=10)
    args = parser.parse_args()
    console = Console(width=shutil.get_terminal_size((160, 24)).columns)
    rows = run(args.requests, args.tutors)
    table = Table(title="vidpipe chaos (Postgres)")
    columns = ("scenario", "queues", "completed", "failed_with_reason", "cancelled", "duplicates",
               "lost_artifacts", "projection_mismatches", "server_errors", "not_4xx_with_message",
               "recovery_seconds")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    console.print(table)
    for row in rows:
        console.print(f"{row['scenario']}: answers {row['answers']}; examples of unclear answers: {row['examples']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(
        {"measured_at": datetime.now(timezone.utc).isoformat(), "python": sys.version.split()[0], "results": rows},
        indent=2,
    ))
    console.print(f"written to {RESULTS.relative_to(ROOT)}")
    failed = any(r["server_errors"] or r["not_4xx_with_message"] or r["duplicates"] or r["lost_artifacts"]
                 or r["projection_mismatches"] or r["unfinished_or_unexplained"] or r["orphan_ffmpeg"] for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
