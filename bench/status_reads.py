"""Status reads under a C load generator: vidpipe's endpoint beside minimal ones.

On a fresh Postgres schema this starts the local QStash server and the vidpipe
API (``python -m api``, default settings: followers in the process, simulated
steps), uploads ``--queues`` videos and waits until they completed. Then it
starts two *minimal* FastAPI apps (``bench/minimal_status.py``), each its own process, that
verify the same HS256 JWT (same secret, role claim, audience, issuer and
leeway) and read the same row of the same status view
(``video_processing_queue_status``) on autocommit connections (one round trip),
check the owner and return the row as FastAPI encodes a dict:

- ``minimal-sync``: a plain ``def`` route and psycopg_pool's ``ConnectionPool``
  (the issue's reference: the target is vidpipe >= its throughput);
- ``minimal-async``: an ``async def`` route and ``AsyncConnectionPool``.

All run under uvicorn with the same settings (one worker, vidpipe's
keep-alive and header buffer), on loopback. Debian's ``wrk`` (C, epoll) loads
each in turn with ``--connections`` keep-alive connections on ``--threads``
threads for ``--seconds``, cycling over the seeded queues with one token; a
short warm-up precedes each run and each endpoint leads a round in turn
(``--rounds``), so all see the same machine. wrk's Lua ``done`` hook reports
requests, errors (non-2xx answers included) and latency percentiles; the
server process's CPU time (``/proc``, all threads, vidpipe's followers
included) over the run gives CPU per request, which a loaded machine
disturbs less than requests/s.

Printed as a table and written to ``bench/results/status_reads.json``:
per round and as medians, and vidpipe's ratios to each minimal endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
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
from bench import minimal_status
from bench.api import upload, wait_terminal
from bench.core import database
from bench.pipeline import ROOT, free_port, launch, wait_http

RESULTS = ROOT / "bench" / "results" / "status_reads.json"
OWNER = "bench-tutor"
PREFIX = "/api/video-processing"
MINIMAL_PREFIX = minimal_status.PREFIX
TARGETS = ("vidpipe", "minimal-sync", "minimal-async")
TARGET_REFERENCE = "minimal-sync"
IDLE_SECONDS = 3.0
"""The issue's minimal endpoint: a plain FastAPI route (``def``) and a psycopg pool."""

WRK_SCRIPT = r"""
local ids = {}
for id in string.gmatch(os.getenv("WRK_QUEUE_IDS"), "[^,]+") do ids[#ids + 1] = id end
local prefix = os.getenv("WRK_PATH_PREFIX")
local n = 0
wrk.headers["Authorization"] = "Bearer " .. os.getenv("WRK_TOKEN")

request = function()
  n = n + 1
  return wrk.format("GET", prefix .. ids[(n % #ids) + 1])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


# --- the measurement ---

def wrk_available() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk (Debian's package)")
    return path


def run_wrk(url: str, prefix: str, queue_ids: list[str], token: str, *, seconds: int, connections: int,
            threads: int, script: Path) -> dict[str, Any]:
    """One wrk run; wrk's own summary (via the Lua ``done`` hook) as a dict."""
    env = {**os.environ, "WRK_TOKEN": token, "WRK_PATH_PREFIX": prefix, "WRK_QUEUE_IDS": ",".join(queue_ids)}
    completed = subprocess.run(
        [wrk_available(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(script), url],
        env=env, capture_output=True, text=True, timeout=seconds + 60, check=False,
    )
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip() or completed.stdout}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    seconds_taken = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "seconds": round(seconds_taken, 3),
        "requests_per_second": round(raw["requests"] / seconds_taken, 1),
        "errors": raw["errors"],
        "p50_ms": raw["latency_us"]["p50"] / 1000,
        "p90_ms": raw["latency_us"]["p90"] / 1000,
        "p99_ms": raw["latency_us"]["p99"] / 1000,
        "max_ms": raw["latency_us"]["max"] / 1000,
    }


async def seed(base_url: str, token: str, queues: int) -> list[str]:
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=60) as client:
        queue_ids = [await upload(client, i) for i in range(queues)]
        for qid in queue_ids:
            await wait_terminal(client, qid)
    return queue_ids


def same_row(urls: dict[str, tuple[str, str]], queue_id: str, token: str) -> dict[str, Any]:
    """Every endpoint answers the same queue at the same version (they read the same row)."""
    answers = {}
    for target, (base, prefix) in urls.items():
        response = httpx.get(f"{base}{prefix}{queue_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        response.raise_for_status()
        answers[target] = response
    seen = {(a.json()["queue_id"], a.json()["version"], a.json()["status"]) for a in answers.values()}
    if len(seen) != 1:
        raise RuntimeError(f"the endpoints disagree: {[a.text for a in answers.values()]}")
    ((qid, version, status),) = seen
    return {"queue_id": qid, "version": version, "status": status,
            "response_bytes": {t: len(a.content) for t, a in answers.items()}}


def spawn_minimal(url: str, workdir: Path, variant: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``bench.minimal_status`` (``variant``) with vidpipe's JWT settings; wait with :func:`wait_http`."""
    port, settings = free_port(), Settings()
    env = {
        **os.environ,
        "MINIMAL_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "MINIMAL_JWT_AUDIENCE": settings.jwt_audience or "",
        "MINIMAL_JWT_ISSUER": settings.jwt_issuer or "",
        "MINIMAL_JWT_ROLE_CLAIM": settings.jwt_role_claim,
        "MINIMAL_JWT_REQUIRED_ROLE": settings.jwt_required_role,
    }
    with (workdir / f"minimal-{variant}.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.minimal_status", variant, "--port", str(port), "--database-url", url],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(*, seconds: int = 10, connections: int = 200, threads: int = 2, rounds: int = 5,
            queues: int = 10, warmup_seconds: int = 2) -> dict[str, Any]:
    wrk_available()
    workdir = Path(tempfile.mkdtemp(prefix="vidpipe-bench-status-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with database("postgres") as url:
            where: dict[str, tuple[str, str]] = {}
            pids: dict[str, int] = {}
            for variant in ("sync", "async"):  # they start while vidpipe's stack does
                process, base = spawn_minimal(url, workdir, variant)
                processes.append(process)
                where[f"minimal-{variant}"] = (base, MINIMAL_PREFIX)
                pids[f"minimal-{variant}"] = process.pid
            stack, vidpipe_url = launch(
                url, workdir, VIDPIPE_STORAGE_DIR=str(workdir / "storage"),
                VIDPIPE_PROJECTION_POLL_SECONDS=str(Settings().projection_poll_seconds),  # the default
            )
            processes += stack
            token = mint(Settings(), OWNER, "tutor")
            queue_ids = asyncio.run(seed(vidpipe_url, token, queues))
            for target, (base, _) in where.items():
                if target != "vidpipe":
                    wait_http(f"{base}/docs")
            where["vidpipe"] = (vidpipe_url, f"{PREFIX}/status/")
            pids["vidpipe"] = stack[0].pid
            where = {target: where[target] for target in TARGETS}
            agreement = same_row(where, queue_ids[0], token)
            script = workdir / "status.lua"
            script.write_text(WRK_SCRIPT)
            common = {"connections": connections, "threads": threads, "script": script}
            idle_before = {target: cpu_seconds(pid) for target, pid in pids.items()}
            time.sleep(IDLE_SECONDS)  # what each server burns with no request (vidpipe: its followers)
            idle_cpu = {target: round((cpu_seconds(pid) - idle_before[target]) * 100 / IDLE_SECONDS, 1)
                        for target, pid in pids.items()}
            runs: dict[str, list[dict[str, Any]]] = {t: [] for t in TARGETS}
            for round_ in range(rounds):
                shift = round_ % len(TARGETS)
                for target in TARGETS[shift:] + TARGETS[:shift]:  # each leads in turn
                    base, prefix = where[target]
                    if warmup_seconds:
                        run_wrk(base, prefix, queue_ids, token, seconds=warmup_seconds, **common)
                    cpu_before = cpu_seconds(pids[target])
                    result = run_wrk(base, prefix, queue_ids, token, seconds=seconds, **common)
                    cpu = cpu_seconds(pids[target]) - cpu_before
                    result["server_cpu_ms_per_request"] = round(cpu * 1000 / max(1, result["requests"]), 3)
                    runs[target].append({"round": round_ + 1, **result})
        result = summarise(runs, agreement, seconds=seconds, connections=connections, threads=threads,
                           rounds=rounds, queues=queues, warmup_seconds=warmup_seconds)
        result["idle_cpu_percent"] = idle_cpu
        return result
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def summarise(runs: dict[str, list[dict[str, Any]]], agreement: dict[str, Any], **setup: Any) -> dict[str, Any]:
    medians = {
        target: {
            "requests_per_second": statistics.median(r["requests_per_second"] for r in rs),
            "p50_ms": statistics.median(r["p50_ms"] for r in rs),
            "p99_ms": statistics.median(r["p99_ms"] for r in rs),
            "server_cpu_ms_per_request": statistics.median(r["server_cpu_ms_per_request"] for r in rs),
            "errors": sum(sum(r["errors"].values()) for r in rs),
        }
        for target, rs in runs.items()
    }
    ours = medians["vidpipe"]
    ratios = {}
    for reference in TARGETS[1:]:
        theirs = medians[reference]
        ratios[reference] = {
            "throughput": round(ours["requests_per_second"] / max(theirs["requests_per_second"], 1e-9), 3),
            "throughput_per_round": [
                round(v["requests_per_second"] / m["requests_per_second"], 3)
                for v, m in zip(runs["vidpipe"], runs[reference], strict=True) if m["requests_per_second"] > 0
            ],
            "p99": round(ours["p99_ms"] / max(theirs["p99_ms"], 1e-9), 3),
            "cpu_per_request": round(
                ours["server_cpu_ms_per_request"] / max(theirs["server_cpu_ms_per_request"], 1e-9), 3
            ),
        }
    return {
        "setup": setup,
        "same_row": agreement,
        "runs": runs,
        "median": medians,
        "vidpipe_over": ratios,
        "target_met": ratios[TARGET_REFERENCE]["throughput"] >= 1.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="status reads under wrk: vidpipe beside minimal endpoints")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queues", type=int, default=10)
    args = parser.parse_args()
    console = Console(width=shutil.get_terminal_size((140, 24)).columns)
    console.print(f"status reads: wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, "
                  f"{args.rounds} rounds, {', '.join(TARGETS)} in turn...")
    result = measure(seconds=args.seconds, connections=args.connections, threads=args.threads,
                     rounds=args.rounds, queues=args.queues)
    table = Table(title=f"status reads, wrk {args.connections} connections (Postgres)")
    for column in ("endpoint", "round", "req/s", "p50 (ms)", "p99 (ms)", "server CPU / request (ms)", "errors"):
        table.add_column(column, justify="right")
    for target in TARGETS:
        for r in result["runs"][target]:
            table.add_row(target, str(r["round"]), f"{r['requests_per_second']:.0f}", f"{r['p50_ms']:.0f}",
                          f"{r['p99_ms']:.0f}", f"{r['server_cpu_ms_per_request']:.2f}",
                          str(sum(r["errors"].values())))
        m = result["median"][target]
        table.add_row(target, "median", f"{m['requests_per_second']:.0f}", f"{m['p50_ms']:.0f}",
                      f"{m['p99_ms']:.0f}", f"{m['server_cpu_ms_per_request']:.2f}", str(m["errors"]))
    console.print(table)
    console.print("idle CPU (% of a core, no requests): " + ", ".join(
        f"{t} {p:.1f}" for t, p in result["idle_cpu_percent"].items()))
    for reference, r in result["vidpipe_over"].items():
        console.print(f"vidpipe / {reference}: throughput {r['throughput']:.2f} (per round "
                      f"{r['throughput_per_round']}), p99 {r['p99']:.2f}, CPU per request {r['cpu_per_request']:.2f}")
    console.print(f"target (vidpipe >= {TARGET_REFERENCE} in throughput): "
                  f"{'met' if result['target_met'] else 'NOT met'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "measured_at": datetime.now(timezone.utc).isoformat(), "python": sys.version.split()[0],
        "machine": platform.machine(), "cpus": os.cpu_count(), "wrk": _wrk_version(), **result,
    }, indent=2))
    console.print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


def _wrk_version() -> str:
    try:
        out = subprocess.run([wrk_available(), "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, RuntimeError):
        return "unknown"
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else "unknown"


if __name__ == "__main__":
    sys.exit(main())
