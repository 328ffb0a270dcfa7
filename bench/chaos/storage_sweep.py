"""Scenario *storage sweep*: after the process-deaths run, the sweeper removes what dead requests left.

Runs :mod:`bench.chaos.deaths`, which leaves files of upload requests that
died midway in storage: partial ``.incoming-*`` files and complete uploads no
queue uses. The full form runs the full deaths scenario (30 tutors' uploads
while the API is SIGKILLed mid-upload, after storing, mid-step, around
publishes, in projections, and by the killer). The reduced form runs the
reduced deaths scenario (5 lectures, each failpoint once — among them
``upload.mid_upload``, a partial file, and ``upload.after_store``, a complete
upload whose queue was never started — and 2+ killer kills); the uploads are
retried with their keys and every queue runs to the end with real steps.
:func:`run_with_deaths` returns both rows, so ``make test`` runs the deaths
once for its deaths test and its sweep test.

Then, with the stack stopped (no request is in flight, so no grace period is
needed: ``grace_seconds=0``), the storage sweeper
(:mod:`handlers.storage.sweeper`) runs once. Promises checked:

- before the sweep, the sweeper's orphans are exactly — file for file — the
  files left by dead requests as computed independently
  (:func:`~bench.chaos.deaths.files_left_by_dead_requests`: partial files plus
  uploads whose path is no source of a queue in the read model), and their
  count is the deaths scenario's own;
- the sweep removes exactly those, and 0 orphaned files remain;
- no other file was removed or changed: every file that was not left by a
  dead request (each queue's upload and artifacts) is still there with its
  size, every file the sweeper counted as referenced too, every queue's
  source upload is there, and the shared invariants hold again (no artifact
  of a completed queue missing, projections equal a rebuild, ...).

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
from projections.follower import EventFollower
from projections.queue_status import QueueStatusProjection
from projections.views import open_view

NAME = "storage sweep: the sweeper after the process-deaths run (partial files, uploads no queue uses)"


def run(url: str, workdir: Path, *, reduced: bool) -> dict[str, Any]:
    return run_with_deaths(url, workdir, reduced=reduced)[1]


def run_with_deaths(url: str, workdir: Path, *, reduced: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The deaths scenario (its reduced or full form), then the sweep: (the deaths row, the sweep row)."""
    started = time.time()
    died = deaths.run(url, workdir, reduced=reduced)
    return died, sweep_after(url, workdir, died, started)


def sweep_after(url: str, workdir: Path, died: dict[str, Any], started: float) -> dict[str, Any]:
    """The sweeper once over what the deaths run ``died`` (started at ``started``) left in ``workdir``."""
    left = died["details"]["storage_left_by_dead_requests"]
    storage = LocalStorage(workdir / "storage")
    env = DatabaseUrl.parse(url).event_store_env()
    app, view = VideoProcessing(env=env), open_view(env)
    problems = [f"deaths: {problem}" for problem in died.get("problems", [])]
    try:
        sweeper = StorageSweeper(app, view, storage, grace_seconds=0)
        all_before = {f.key: f.size for f in list_files(storage) or []}
        references, now = sweeper.references(), time.time()
        referenced = {f.key: f.size for f in list_files(storage) or [] if classify(f, references, now, 0) == "referenced"}
        sources = [app.get_queue(q).options.get("source") for q in references.queues]
        # independently of the sweeper: the read model's queues (caught up), their sources from the event log
        EventFollower(app, view, QueueStatusProjection()).catch_up()
        projected = [str(r["id"]) for r in view.fetchall("SELECT id FROM video_processing_queue")]
        dead = deaths.files_left_by_dead_requests(
            storage.root, {s for s in (app.get_queue(q).options.get("source") for q in projected) if s})
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
    dead_keys = set(dead["partial_files"]) | set(dead["unreferenced_uploads"])
    orphan_keys = {stored.key for _, stored in before.orphans}
    if before.orphaned.files != expected:
        problems.append(f"the sweeper found {before.orphaned.files} orphaned files; the deaths run counted {expected} "
                        f"({left})")
    if orphan_keys != dead_keys:
        problems.append(f"the sweeper's orphans are not the files dead requests left: only the sweeper's "
                        f"{sorted(orphan_keys - dead_keys)[:3]}, only the independent count's {sorted(dead_keys - orphan_keys)[:3]}")
    gone = {key for key in all_before if key not in still}
    if gone != dead_keys:
        problems.append(f"the sweep removed {len(gone)} files, the dead requests left {len(dead_keys)}: "
                        f"removed but not left {sorted(gone - dead_keys)[:3]}, left but kept {sorted(dead_keys - gone)[:3]}")
    if after.orphaned.files:
        problems.append(f"{after.orphaned.files} orphaned files left after the sweep")
    removed_referenced = sorted(key for key, size in referenced.items() if still.get(key) != size)
    if removed_referenced:
        problems.append(f"{len(removed_referenced)} referenced files removed or changed, e.g. {removed_referenced[:3]}")
    changed_others = sorted(key for key, size in all_before.items() if key not in dead_keys and still.get(key) != size)
    if changed_others:
        problems.append(f"{len(changed_others)} files not left by dead requests removed or changed, e.g. {changed_others[:3]}")
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
            "deaths_by_cause": died["details"]["deaths_by_cause"],
            "left_by_dead_requests": left,
            "left_by_dead_requests_bytes": sum(all_before[key] for key in dead_keys if key in all_before),
            "files_before": len(all_before),
            "files_after": len(still),
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
