"""Benchmark of the event-sourced core, on SQLite and Postgres, side by side.

Measured in one run, on the same machine, for each store:

- commands/s: a realistic command mix through ``VideoProcessing`` (create, then
  for each of the four steps: start, three progress reports, complete);
- projection events/s: the queue-status follower applying that whole log
  from event 0 (its catch-up speed, what a rebuild costs);
- projection lag p50/p99: with the follower running in the background at its
  default poll interval (50 ms), the time from a command's save returning to
  its row (the new version) being visible in ``video_processing_queue_status``;
  commands are issued at random moments, one at a time.

Results are printed as a table and written to ``bench/results/core.json``.
Absolute numbers on a shared 2-core machine are noisy; compare the stores
with each other within one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table

from domain import STEPS, VideoProcessing
from projections.database import DatabaseUrl
from projections.follower import EventFollower
from projections.queue_status import QueueStatusProjection
from projections.views import open_view

RESULTS = Path(__file__).resolve().parent / "results" / "core.json"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A throw-away database of ``kind``; removed afterwards."""
    if kind == "sqlite":
        directory = tempfile.mkdtemp(prefix="vidpipe-bench-")
        try:
            yield f"sqlite:///{directory}/bench.db"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    schema = f"vidpipe_bench_{uuid.uuid4().hex[:8]}"
    conninfo = DatabaseUrl.parse(POSTGRES).conninfo()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{POSTGRES}?schema={schema}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def one_queue(app: VideoProcessing, owner: str) -> int:
    """Drive one queue through the pipeline; return the number of commands."""
    qid = app.start_processing(owner, f"attachment-{uuid.uuid4().hex[:6]}")
    commands = 1
    for step in STEPS:
        app.start_step(qid, step, 1)
        for percent in (25, 50, 75):
            app.report_progress(qid, step, 1, percent)
        app.complete_step(qid, step, 1, {"artifact": f"{owner}/{qid}/{step}"}, provider="bench")
        commands += 5
    return commands


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(kind: str, queues: int, lag_samples: int) -> dict[str, float]:
    with database(kind) as url:
        env = DatabaseUrl.parse(url).event_store_env()
        app = VideoProcessing(env=env)
        view = open_view(env)
        try:
            # commands per second
            started = time.perf_counter()
            commands = sum(one_queue(app, f"tutor-{i % 10}") for i in range(queues))
            command_seconds = time.perf_counter() - started

            # projection throughput, from event 0
            follower = EventFollower(app, view, QueueStatusProjection())
            events = app.recorder.max_notification_id() or 0
            started = time.perf_counter()
            follower.catch_up()
            projection_seconds = time.perf_counter() - started

            # projection lag: save returns -> the row's version is visible in the view.
            # Commands arrive at random moments (not right after the runner's last
            # poll), as they would from independent tutors and handlers.
            follower.start()
            lags: list[float] = []
            qid = app.start_processing("lag", "lag")
            app.start_step(qid, "compress", 1)
            version = app.get_queue(qid).version
            for percent in range(1, lag_samples + 1):
                time.sleep(random.uniform(0, 2 * follower.poll_interval))
                app.report_progress(qid, "compress", 1, percent)
                saved = time.perf_counter()
                version += 1
                while True:
                    row = view.fetchone(
                        "SELECT version FROM video_processing_queue_status WHERE queue_id = :id",
                        {"id": str(qid)},
                    )
                    if row is not None and row["version"] >= version:
                        break
                    time.sleep(0.0005)
                lags.append(time.perf_counter() - saved)
            follower.stop()
        finally:
            view.close()
            app.close()
    return {
        "queues": queues,
        "commands": commands,
        "commands_per_second": commands / command_seconds,
        "events": events,
        "projection_events_per_second": events / projection_seconds,
        "lag_samples": len(lags),
        "lag_p50_ms": percentile(lags, 0.50) * 1000,
        "lag_p99_ms": percentile(lags, 0.99) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="benchmark the event-sourced core")
    parser.add_argument("--queues", type=int, default=200, help="queues driven per store")
    parser.add_argument("--lag-samples", type=int, default=99, help="lag measurements (at most 99)")
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()

    console = Console(width=shutil.get_terminal_size((120, 24)).columns)
    results = {}
    for kind in args.stores.split(","):
        console.print(f"measuring {kind} ({args.queues} queues)...")
        results[kind] = measure(kind, args.queues, min(args.lag_samples, 99))

    table = Table(title="vidpipe core benchmark")
    for column in ("store", "commands/s", "projection events/s", "lag p50 (ms)", "lag p99 (ms)"):
        table.add_column(column, justify="right")
    for kind, r in results.items():
        table.add_row(
            kind,
            f"{r['commands_per_second']:.0f}",
            f"{r['projection_events_per_second']:.0f}",
            f"{r['lag_p50_ms']:.1f}",
            f"{r['lag_p99_ms']:.1f}",
        )
    console.print(table)
    if {"sqlite", "postgres"} <= results.keys():
        s, p = results["sqlite"], results["postgres"]
        console.print(
            f"postgres/sqlite ratios: commands {p['commands_per_second'] / s['commands_per_second']:.2f}, "
            f"projection {p['projection_events_per_second'] / s['projection_events_per_second']:.2f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "measured_at": datetime.now(timezone.utc).isoformat(),
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "python": sys.version.split()[0],
                "results": results,
            },
            indent=2,
        )
    )
    console.print(f"written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
