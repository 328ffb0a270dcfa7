"""``python -m bench.chaos`` (``make chaos``): run the scenarios, print the table, write ``bench/results/chaos.json``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.chaos import SCENARIOS, scenario
from bench.core import database

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "chaos.json"
COLUMNS = ("scenario", "queues", "completed", "failed_with_reason", "cancelled", "duplicates", "lost_artifacts",
           "projection_mismatches", "server_errors", "recovery_seconds")
MUST_BE_ZERO = ("unfinished_or_unexplained", "duplicates", "lost_artifacts", "projection_mismatches",
                "orphan_ffmpeg", "server_errors")


def violations(row: dict[str, Any]) -> list[str]:
    """What broke a promise in this row (empty: the scenario passed)."""
    found = [f"{key} = {row[key]}" for key in MUST_BE_ZERO if row.get(key)]
    return found + list(row.get("problems", []))


def run_scenario(key: str, *, reduced: bool) -> dict[str, Any]:
    """Run one scenario (a key of :data:`SCENARIOS`) on a fresh Postgres schema; returns its row."""
    module = scenario(key)
    workdir = Path(tempfile.mkdtemp(prefix="vidpipe-chaos-"))
    try:
        if getattr(module, "OWN_DATABASE", False):  # e.g. the Postgres restart brings its own server
            return module.run(None, workdir, reduced=reduced)
        with database("postgres") as url:
            return module.run(url, workdir, reduced=reduced)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="fault injection against the running service (Postgres)")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="run just this scenario (repeatable)")
    parser.add_argument("--reduced", action="store_true", help="the smaller form make test runs")
    args = parser.parse_args()
    console = Console(width=shutil.get_terminal_size((160, 24)).columns)
    names = args.only or list(SCENARIOS)
    rows = []
    for name in names:
        console.print(f"[bold]chaos:[/bold] {name} ...")
        try:
            row = run_scenario(name, reduced=args.reduced)
        except Exception as error:  # noqa: BLE001 - report it in the table and go on with the next scenario
            traceback.print_exc()
            row = {"scenario": name, "problems": [f"the scenario crashed: {error!r}"]}
        row["key"] = name
        row["violations"] = violations(row)
        rows.append(row)
        console.print(f"  {name}: {'ok' if not row['violations'] else 'BROKEN: ' + '; '.join(row['violations'])}")
    table = Table(title="vidpipe chaos (Postgres)" + (" — reduced" if args.reduced else ""))
    for column in (*COLUMNS, "verdict"):
        table.add_column(column.replace("_", " "), justify="right")
    for row in rows:
        table.add_row(*(str(row.get(c, "-")) for c in COLUMNS), "ok" if not row["violations"] else "BROKEN")
    console.print(table)
    for row in rows:
        console.print(f"{row['scenario']}: {json.dumps(row.get('details', {}))}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = {}
    if args.only and RESULTS.is_file():  # a partial run updates its rows and keeps the others
        previous = {r["key"]: r for r in json.loads(RESULTS.read_text()).get("results", []) if "key" in r}
    previous.update({r["key"]: r for r in rows})
    ordered = [previous[n] for n in SCENARIOS if n in previous]
    RESULTS.write_text(json.dumps({
        "measured_at": datetime.now(timezone.utc).isoformat(), "python": sys.version.split()[0],
        "reduced": args.reduced, "results": ordered,
    }, indent=2))
    console.print(f"written to {RESULTS.relative_to(ROOT)}")
    return 1 if any(row["violations"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
