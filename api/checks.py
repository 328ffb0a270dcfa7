"""Is each dependency there? Checks shared by ``/readyz`` and ``python -m api.doctor``.

Each check returns a :class:`CheckResult` with what was found and, on
failure, the fix an operator should apply. None raises.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from api.settings import Settings
from handlers.storage import Storage
from projections.views import ReadModelView

READ_MODEL_TABLES = (
    "video_processing_queue",
    "video_processing_steps",
    "video_processing_messages",
    "video_processing_uploads",
    "video_processing_idempotency",
    "notifications",
    "notification_deliveries",
)
PROBE_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def check_database(settings: Settings, view: ReadModelView) -> CheckResult:
    where = f"{settings.database.dialect} {settings.database.path or settings.database.dbname}"
    missing = []
    try:
        for table in READ_MODEL_TABLES:
            try:
                view.fetchone(f"SELECT 1 AS present FROM {table} LIMIT 1")  # noqa: S608 - fixed names
            except Exception as error:  # noqa: BLE001 - a missing table, or the server is down
                if "does not exist" in str(error) or "no such table" in str(error):
                    missing.append(table)
                else:
                    raise
    except Exception as error:  # noqa: BLE001
        return CheckResult("database", False, f"{where}: {type(error).__name__}: {error}",
                           "start the database or fix DATABASE_URL")
    if missing:
        return CheckResult("database", False, f"{where}: missing tables {', '.join(missing)}",
                           "start the API once (it creates the tables) or run make rebuild-projections")
    return CheckResult("database", True, f"{where}: {len(READ_MODEL_TABLES)} read-model tables present")


def check_qstash(settings: Settings) -> CheckResult:
    url = f"{settings.qstash_url.rstrip('/')}/v2/dlq"
    token = settings.qstash_token.get_secret_value()
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=PROBE_TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        return CheckResult("qstash", False, f"{settings.qstash_url} unreachable: {type(error).__name__}: {error}",
                           "start the local server (make qstash) or fix QSTASH_URL")
    if response.status_code in (401, 403):
        return CheckResult("qstash", False, f"{settings.qstash_url} refused QSTASH_TOKEN ({response.status_code})",
                           "copy QSTASH_TOKEN from the Upstash console (QStash → Request builder)")
    if response.status_code >= 500:
        return CheckResult("qstash", False, f"{settings.qstash_url} answered {response.status_code}",
                           "QStash is failing; check status.upstash.com or the local server's log")
    return CheckResult("qstash", True, f"{settings.qstash_url} reachable, token accepted")


def check_storage(storage: Storage) -> CheckResult:
    try:
        storage.exists("vidpipe-readiness-probe")
    except Exception as error:  # noqa: BLE001 - any backend failure means not ready
        return CheckResult("storage", False, f"{storage.name}: {type(error).__name__}: {error}",
                           "check VIDPIPE_STORAGE_DIR is writable (or the MEGA credentials)")
    return CheckResult("storage", True, f"{storage.name} storage reachable")
