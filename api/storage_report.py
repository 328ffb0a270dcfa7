"""``make storage-report``: referenced and orphaned files and bytes in storage; ``--sweep`` removes the orphans.

Orphaned: what upload requests that died midway left (partial files,
uploads no queue uses) and what deleted lectures left, older than
``VIDPIPE_STORAGE_SWEEP_GRACE_SECONDS``; see :mod:`handlers.storage.sweeper`.
The process that runs the followers sweeps every
``VIDPIPE_STORAGE_SWEEP_INTERVAL_SECONDS`` on its own; this is the on-demand
form. Also a ``make doctor`` line (:func:`check_storage_hygiene`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from api.checks import CheckResult
from api.settings import Settings
from api.wiring import Core, build_core, build_storage
from domain import VidpipeError
from handlers.storage import Storage
from handlers.storage.sweeper import StorageReport, StorageSweeper, Tally, human_size

KIND_LABELS = {
    "referenced": "referenced",
    "partial": "orphaned: partial uploads",
    "unreferenced_upload": "orphaned: uploads no queue uses",
    "deleted_lecture": "orphaned: deleted lectures' files",
    "young": "unreferenced, within the grace",
    "unrecognised": "unrecognised (never removed)",
}


def build_sweeper(settings: Settings, core: Core, storage: Storage) -> StorageSweeper:
    """The storage sweeper with the configured grace period and interval."""
    return StorageSweeper(core.app, core.view, storage, grace_seconds=settings.storage_sweep_grace_seconds,
                          interval_seconds=settings.storage_sweep_interval_seconds)


def render(report: StorageReport, *, swept: bool) -> list[str]:
    """The report as lines of text."""
    lines = [f"storage: {report.storage}; grace {report.grace_seconds:.0f} s (VIDPIPE_STORAGE_SWEEP_GRACE_SECONDS)"]
    if not report.listable:
        return [*lines, f"{report.storage} storage cannot be listed; nothing to report"]
    for kind, label in KIND_LABELS.items():
        tally = report.kinds.get(kind, Tally())
        lines.append(f"  {label:<36} {tally.files:>7} files {human_size(tally.bytes):>10}")
    orphaned = report.orphaned
    lines.append(f"  {'orphaned in all':<36} {orphaned.files:>7} files {human_size(orphaned.bytes):>10}")
    if swept:
        lines.append(f"removed {report.removed.files} files ({human_size(report.removed.bytes)})"
                     + (f"; could not remove {len(report.failed)}: {'; '.join(report.failed[:5])}" if report.failed else ""))
    elif orphaned.files:
        lines.append("remove them with: make storage-report SWEEP=1 (the follower process also sweeps every "
                     "VIDPIPE_STORAGE_SWEEP_INTERVAL_SECONDS)")
    return lines


def check_storage_hygiene(sweeper: StorageSweeper) -> CheckResult:
    """The doctor's line: referenced and orphaned bytes; orphans are a warning, never a failure."""
    report = sweeper.report()
    if not report.listable:
        return CheckResult("storage use", True, report.summary(), required=False)
    return CheckResult("storage use", report.orphaned.files == 0, report.summary(),
                       "make storage-report SWEEP=1 removes the orphaned files", required=False)


def _run(settings: Settings, *, sweep: bool) -> StorageReport:
    core = build_core(settings)
    storage = build_storage(settings)
    try:
        sweeper = build_sweeper(settings, core, storage)
        return sweeper.sweep() if sweep else sweeper.report()
    finally:
        core.close()
        close = getattr(storage, "close", None)
        if close is not None:
            close()


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.storage_report", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true", help="remove the orphaned files older than the grace period")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except (VidpipeError, ValueError) as error:
        print(f"configuration: {error}", file=out)
        return 2
    try:
        report = _run(settings, sweep=args.sweep)
    except Exception as error:  # noqa: BLE001 - the database or storage is unreachable: say so, no traceback
        print(f"storage report failed: {type(error).__name__}: {error}; check DATABASE_URL and storage "
              "(make doctor)", file=out)
        return 1
    if args.json:
        print(json.dumps(report.as_dict(), indent=2), file=out)
    else:
        print("\n".join(render(report, swept=args.sweep)), file=out)
    return 0 if report.listable and not report.failed else 1


if __name__ == "__main__":
    sys.exit(main())
