"""The queue-status projection: ``video_processing_queue`` and ``video_processing_steps``.

Each event of a ProcessingQueue becomes a few row updates. Everything a
reader needs is computed here, not at read time:

- ``status``: ``pending`` until the first step starts, ``processing`` while
  steps run, then the terminal status of ``Completed``/``Failed``/``Cancelled``;
  ``processing`` again after ``Resumed`` (a retry: the steps not completed are
  pending again, with no retries and no error);
- ``current_step``: the first running step in pipeline order (steps run side
  by side: compress and audio-convert); while none runs, the last one shown;
  after a failure the failed step, after a cancellation the first step that
  was running, so the tutor sees where it stopped; cleared on completion. The
  view adds ``running_steps``, every running step in pipeline order;
- ``progress_percentage``: the steps' progress weighted by their expected cost
  (:data:`STEP_WEIGHTS`, over the steps of the queue's own graph), 100 once the
  queue has completed. Step progress only grows, so the queue's does too.

Row timestamps come from the events, never from the clock, so rebuilding the
projection from event 0 gives the very same rows.
"""

from __future__ import annotations

import json
from functools import singledispatchmethod
from typing import Any

from domain.queue import ProcessingQueue
from projections.views import ReadModelView, SqlSession

Q = ProcessingQueue

STEP_WEIGHTS: dict[str, int] = {"compress": 64, "audio-convert": 4, "transcribe": 31, "embed": 1}
"""Each step's share of the queue's progress: its share of the time the README's benchmark
measured for a 10-minute lecture (compress 208 s, audio 11 s, transcribe 102 s, embed 0.6 s),
in percent. A queue without a step (``skip_compress``) shares out the others' weights."""

_WEIGHT = "CASE step " + " ".join(f"WHEN '{s}' THEN {w}" for s, w in STEP_WEIGHTS.items()) + " ELSE 1 END"


def weighted_progress(progress: dict[str, int]) -> int:
    """The queue's progress from its steps' (step → percent), as the projection computes it."""
    total = sum(STEP_WEIGHTS.get(step, 1) for step in progress)
    return sum(p * STEP_WEIGHTS.get(step, 1) for step, p in progress.items()) // max(1, total)


_TOUCH_QUEUE = (
    "UPDATE video_processing_queue SET updated_at = :at, version = :version WHERE id = :id"
)
"""First statement of every event but ``Created``: the queue's row is locked before its
steps' rows, so two runners of the projection never wait for each other in opposite orders."""
_RECOMPUTE_PROGRESS = (
    "UPDATE video_processing_queue SET progress_percentage = ("
    f"SELECT SUM(progress * {_WEIGHT}) / SUM({_WEIGHT}) FROM video_processing_steps WHERE queue_id = :id"
    ") WHERE id = :id"
)
_FIRST_RUNNING = (
    "UPDATE video_processing_queue SET current_step = COALESCE(("
    "SELECT step FROM video_processing_steps WHERE queue_id = :id AND status = 'running' "
    "ORDER BY position LIMIT 1), current_step) WHERE id = :id"
)


def _common(domain_event: Any) -> dict[str, Any]:
    return {
        "id": str(domain_event.originator_id),
        "at": domain_event.timestamp.isoformat(),
        "version": domain_event.originator_version,
    }


class QueueStatusProjection:
    """Keeps the queue and steps tables in step with the event log."""

    name = "queue_status"

    def prepare(self, events: Any) -> None:
        """No side effects: everything happens in the transaction."""

    def reset(self, session: SqlSession) -> None:
        session.execute("DELETE FROM video_processing_steps")
        session.execute("DELETE FROM video_processing_queue")

    @singledispatchmethod
    def apply(self, domain_event: Any, session: SqlSession) -> None:
        """Events this projection does not know change nothing."""

    @apply.register
    def _(self, e: Q.Created, session: SqlSession) -> None:
        p = _common(e)
        session.execute(
            "INSERT INTO video_processing_queue (id, owner_id, attachment_id, status, "
            "progress_percentage, options, version, created_at, updated_at) VALUES "
            "(:id, :owner, :attachment, 'pending', 0, :options, :version, :at, :at)",
            {**p, "owner": e.owner_id, "attachment": e.attachment_id,
             "options": session.json_param(e.options)},
        )
        for position, step in enumerate(e.steps):
            session.execute(
                "INSERT INTO video_processing_steps (queue_id, step, position, status, "
                "updated_at) VALUES (:id, :step, :position, 'pending', :at)",
                {**p, "step": step, "position": position},
            )

    @apply.register
    def _(self, e: Q.StepStarted, session: SqlSession) -> None:
        p = {**_common(e), "step": e.step, "attempt": e.attempt}
        session.execute(_TOUCH_QUEUE, p)
        self._update_step(
            session, p,
            "status = 'running', attempts = :attempt, "
            "started_at = COALESCE(started_at, :at)",
        )
        session.execute(
            "UPDATE video_processing_queue SET status = 'processing', "
            "started_at = COALESCE(started_at, :at) WHERE id = :id",
            p,
        )
        session.execute(_FIRST_RUNNING, p)

    @apply.register
    def _(self, e: Q.StepProgressed, session: SqlSession) -> None:
        p = {**_common(e), "step": e.step, "percent": e.percent}
        session.execute(_TOUCH_QUEUE, p)
        self._update_step(session, p, "progress = :percent")
        session.execute(_RECOMPUTE_PROGRESS, p)

    @apply.register
    def _(self, e: Q.StepRetried, session: SqlSession) -> None:
        p = {**_common(e), "step": e.step, "reason": e.reason}
        session.execute(_TOUCH_QUEUE, p)
        self._update_step(
            session, p, "status = 'retrying', retries = retries + 1, last_error = :reason"
        )
        session.execute(
            "UPDATE video_processing_queue SET retries = retries + 1 WHERE id = :id", p
        )
        session.execute(_FIRST_RUNNING, p)

    @apply.register
    def _(self, e: Q.StepCompleted, session: SqlSession) -> None:
        p = {
            **_common(e),
            "step": e.step,
            "provider": e.provider,
            "model": e.model,
            "duration": e.duration_seconds,
            "outputs": session.json_param(e.outputs),
        }
        session.execute(_TOUCH_QUEUE, p)
        self._update_step(
            session, p,
            "status = 'completed', progress = 100, completed_at = :at, provider = :provider, "
            "model = :model, duration_seconds = :duration, outputs = :outputs",
        )
        session.execute(_RECOMPUTE_PROGRESS, p)
        session.execute(_FIRST_RUNNING, p)

    @apply.register
    def _(self, e: Q.StepFailed, session: SqlSession) -> None:
        p = {**_common(e), "step": e.step, "reason": e.reason}
        session.execute(_TOUCH_QUEUE, p)
        self._update_step(session, p, "status = 'failed', last_error = :reason")

    @apply.register
    def _(self, e: Q.Completed, session: SqlSession) -> None:
        p = _common(e)
        session.execute(_TOUCH_QUEUE, p)
        session.execute(
            "UPDATE video_processing_queue SET status = 'completed', progress_percentage = 100, "
            "current_step = NULL, finished_at = :at WHERE id = :id",
            p,
        )

    @apply.register
    def _(self, e: Q.Failed, session: SqlSession) -> None:
        p = {**_common(e), "reason": e.reason, "step": e.step}
        session.execute(_TOUCH_QUEUE, p)
        session.execute(
            "UPDATE video_processing_queue SET status = 'failed', error = :reason, "
            "current_step = :step, finished_at = :at WHERE id = :id",
            p,
        )

    @apply.register
    def _(self, e: Q.Resumed, session: SqlSession) -> None:
        p = _common(e)
        session.execute(_TOUCH_QUEUE, p)
        for step in e.steps:
            self._update_step(session, {**p, "step": step}, "status = 'pending', retries = 0, last_error = NULL")
        session.execute(
            "UPDATE video_processing_queue SET status = 'processing', error = NULL, finished_at = NULL "
            "WHERE id = :id",
            p,
        )

    @apply.register
    def _(self, e: Q.Cancelled, session: SqlSession) -> None:
        p = {**_common(e), "reason": e.reason, "step": e.step}
        session.execute(_TOUCH_QUEUE, p)
        for step in e.steps:
            self._update_step(session, {**p, "step": step}, "status = 'cancelled'")
        session.execute(
            "UPDATE video_processing_queue SET status = 'cancelled', error = :reason, "
            "current_step = COALESCE(:step, current_step), finished_at = :at WHERE id = :id",
            p,
        )

    @apply.register
    def _(self, e: Q.Deleted, session: SqlSession) -> None:
        """The tombstone: the lecture leaves the status table and view (in a rebuild too)."""
        p = _common(e)
        session.execute(_TOUCH_QUEUE, p)  # the queue row first, as every event does (lock order)
        session.execute("DELETE FROM video_processing_steps WHERE queue_id = :id", p)
        session.execute("DELETE FROM video_processing_queue WHERE id = :id", p)

    @staticmethod
    def _update_step(session: SqlSession, params: dict[str, Any], assignments: str) -> None:
        session.execute(
            f"UPDATE video_processing_steps SET {assignments}, updated_at = :at "
            "WHERE queue_id = :id AND step = :step",
            params,
        )


class QueueStatusReader:
    """Queries on the status view, for the API and for operators.

    Rows come back as plain dicts; timestamps as ISO-8601 strings and ``steps``
    as a list of dicts on both dialects.
    """

    def __init__(self, view: ReadModelView) -> None:
        self.view = view

    STATUS = "SELECT * FROM video_processing_queue_status WHERE queue_id = :id"

    def status(self, queue_id: str) -> dict[str, Any] | None:
        row = self.view.fetchone(self.STATUS, {"id": queue_id})
        return None if row is None else _normalised(row)

    async def astatus(self, queue_id: str) -> dict[str, Any] | None:
        """:meth:`status` awaited on the event loop (one round trip on Postgres, no worker thread)."""
        row = await self.view.afetchone(self.STATUS, {"id": queue_id})
        return None if row is None else _normalised(row)

    def list_for_owner(
        self, owner_id: str, *, status: str | None = None, limit: int = 20, offset: int = 0
    ) -> list[dict[str, Any]]:
        """The owner's queues, newest first."""
        return [_normalised(row) for row in self.view.fetchall(*_owner_page(owner_id, status, limit, offset))]

    async def alist_for_owner(
        self, owner_id: str, *, status: str | None = None, limit: int = 20, offset: int = 0
    ) -> list[dict[str, Any]]:
        """:meth:`list_for_owner` awaited on the event loop."""
        rows = await self.view.afetchall(*_owner_page(owner_id, status, limit, offset))
        return [_normalised(row) for row in rows]

    def table_rows(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of both tables in a stable order (for comparing projections)."""
        return {
            "video_processing_queue": self.view.fetchall(
                "SELECT * FROM video_processing_queue ORDER BY id"
            ),
            "video_processing_steps": self.view.fetchall(
                "SELECT * FROM video_processing_steps ORDER BY queue_id, position"
            ),
        }


def _owner_page(owner_id: str, status: str | None, limit: int, offset: int) -> tuple[str, dict[str, Any]]:
    """The statement and parameters of one page of an owner's queues, newest first."""
    where = "owner_id = :owner" + (" AND status = :status" if status else "")
    return (
        f"SELECT * FROM video_processing_queue_status WHERE {where} "  # noqa: S608 - fixed text
        "ORDER BY created_at DESC, queue_id LIMIT :limit OFFSET :offset",
        {"owner": owner_id, "status": status, "limit": limit, "offset": offset},
    )


def _normalised(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
    steps = out.get("steps")
    if isinstance(steps, str):
        steps = json.loads(steps)
    out["steps"] = [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in s.items()}
        for s in steps or []
    ]
    running = out.get("running_steps")
    out["running_steps"] = json.loads(running) if isinstance(running, str) else list(running or [])
    return out
