"""Scenario *storage sweep*: after the process-deaths run, the sweeper removes what dead requests left.

Runs :mod:`bench.chaos.deaths` (30 tutors' uploads, 5 reduced, while the API
is SIGKILLed mid-upload, after storing, mid-step, ...), which leaves files of
upload requests that died midway in storage: partial ``.incoming-*`` files
and complete uploads no queue uses. Then, with the stack stopped (no request
is in flight, so no grace period is needed: ``grace_seconds=0``), the storage
sweeper (:mod:`handlers.storage.sweeper`) runs once. Promises checked:

- before the sweep, the sweeper's orphans are exactly what the deaths
  scenario's own count found (``storage_left_by_dead_requests``: partial files
  plus uploads whose path is no queue's source, computed independently);
- after it, 0 orphaned files remain;
- no referenced file was removed or changed: every file the sweeper counted
  as referenced is still there with its size, every queue's source upload is
  there, and the shared invariants hold again (no artifact of a completed
  queue missing, projections equal a rebuild, ...).

``recovery_seconds`` is how long the sweep took.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.chaos import deaths
from bench.chaos.harness import check_invariants
from domain import VideoProcessing
from handlers.storage.local import LocalStorage
from handlers.storage.sweeper import StorageSweeper, classify, list_files
from projections.database import DatabaseUrl
from projections.views import open_view

NAME = "storage sweep: the sweeper after the process-deaths run (partial files, uploads no queue uses)"


def run(url: str, workdir: Path, *, reduced: bool) -> dict[str, Any]:
    started = time.time()
    died = deaths.run(url, workdir, reduced=reduced)
    left = died["details"]["storage_left_by_dead_requests"]
    storage = LocalStorage(workdir / "storage")
    env = DatabaseUrl.parse(url).event_store_env()
    app, view = VideoProcessing(env=env), open_view(env)
    problems = [f"deaths: {problem}" for problem in died.get("problems", [])]
    try:
        sweeper = StorageSweeper(app, view, storage, grace_seconds=0)
        references, now = sweeper.references(), time.time()
        referenced = {f.key: f.size for f in list_files(storage) or [] if classify(f, references, now, 0) == "referenced"}
        sources = [app.get_queue(q).options.get("source") for q in references.queues]
        before = sweeper.report()
        sweep_started = time.monotonic()
        swept = sweeper.sweep()
        sweep_seconds = time.monotonic() - sweep_started
        after = sweeper.report()
        still = {f.key: f.size for f in list_files(storage) or []}
    finally:
        view.close()
        app.close()
    expected = left["partial_files"] + left["unreferenced_uploads"]
    if before.orphaned.files != expected:
        problems.append(f"the sweeper found {before.orphaned.files} orphaned files; the deaths run counted {expected} "
                        f"({left})")
    if after.orphaned.files:
        problems.append(f"{after.orphaned.files} orphaned files left after the sweep")
    removed_referenced = sorted(key for key, size in referenced.items() if still.get(key) != size)
    if removed_referenced:
        problems.append(f"{len(removed_referenced)} referenced files removed or changed, e.g. {removed_referenced[:3]}")
    missing_sources = [s for s in sources if not s or s not in still]
    if missing_sources:
        problems.append(f"{len(missing_sources)} queues' source uploads missing after the sweep, e.g. {missing_sources[:3]}")
    if swept.failed:
        problems.append(f"the sweeper could not remove {len(swept.failed)} files, e.g. {swept.failed[:3]}")
    row = check_invariants(url, workdir / "storage", started)
    row.update(
        scenario=NAME,
        server_errors=died.get("server_errors", 0),
        recovery_seconds=round(sweep_seconds, 2),
        details={
            "deaths": died["details"]["deaths"],
            "left_by_dead_requests": left,
            "orphaned_before": {kind: vars(t) for kind, t in before.kinds.items() if kind != "referenced"},
            "removed": vars(swept.removed),
            "orphaned_after": after.orphaned.files,
            "referenced_files": len(referenced),
            "referenced_bytes": sum(referenced.values()),
            "referenced_removed_or_changed": len(removed_referenced),
            "queue_sources_checked": len(sources),
            "unrecognised_files": after.kinds.get("unrecognised", None) and vars(after.kinds["unrecognised"]),
        },
        problems=problems,
    )
    return row
