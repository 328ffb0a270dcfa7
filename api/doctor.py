"""``python -m api.doctor``: is everything vidpipe needs in place? (``make doctor``)

One line per check, ``ok``, ``FAIL`` (required, with the fix) or ``warn``
(optional, with the fix); exit status 1 when a required check failed, 2
when the configuration itself cannot be loaded.

Checks: configuration and required variables, the media tools (ffmpeg,
ffprobe, espeak-ng: path, where it came from, version), the database and its tables,
QStash (reachable, token accepted, signing keys usable), each model server
(waking it if asleep: a sleeping server gets ``--wake-seconds`` to answer),
storage, token verification, the notification credentials, and which process leads each
follower of the log (projection runners, dispatcher).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

import httpx
import jwt
from qstash import Receiver
from qstash.errors import SignatureError

from api.checks import PROBE_TIMEOUT_SECONDS, CheckResult, check_database, check_qstash, check_storage
from api.settings import Settings
from api.storage_report import build_sweeper, check_storage_hygiene
from api.wiring import build_core, build_storage
from domain import VideoProcessing, VidpipeError
from handlers.media import tools
from projections.leadership import leadership_for
from projections.views import open_view

PRODUCTION_VARIABLES = {
    "database_url": "DATABASE_URL",
    "qstash_url": "QSTASH_URL",
    "whisper_url": "WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL",
    "bge_url": "BGE_HG_EMBEDDING_SERVER_API_URL",
    "mega_email": "MEGA_EMAIL",
    "mega_password": "MEGA_PASSWORD",
}
"""Variables production must set explicitly (the embedded defaults are for one machine)."""

WAKING_STATUSES = (502, 503, 504)


def check_variables(settings: Settings) -> CheckResult:
    if settings.environment != "production":
        return CheckResult("variables", True, "development: the embedded defaults fill in whatever is unset")
    present = settings.model_fields_set
    missing = [env for field, env in PRODUCTION_VARIABLES.items()
               if field in Settings.model_fields and field not in present]
    if missing:
        return CheckResult("variables", False, f"production but unset: {', '.join(missing)}",
                           "set them in the deployment's environment (README → Configuration)")
    return CheckResult("variables", True, "production: every required variable is set")


def check_tools(settings: tools.ToolSettings | None = None) -> list[CheckResult]:
    """One line per media tool: its path, where it was found and its version, or why it is missing and the fix.

    ffmpeg and ffprobe are required (every step but embed runs them, Cloudinary or not: transcripts are
    cut at silences locally); espeak-ng only speaks the demo's and the tests' lectures.
    """
    results = []
    for tool in tools.resolve_all(settings):
        required = tool.name != tools.ESPEAK
        if not tool.found:
            results.append(CheckResult(tool.name, False, f"not found: {tool.problem}", tool.fix, required=required))
            continue
        version = tool.version()
        runs = not version.startswith("does not run")
        results.append(CheckResult(tool.name, runs, f"{tool.path} ({tool.source}): {version}",
                                   "" if runs else tool.fix, required=required))
    return results


def check_signing_keys(settings: Settings) -> CheckResult:
    current = settings.qstash_current_signing_key.get_secret_value()
    following = settings.qstash_next_signing_key.get_secret_value()
    if not current or not following:
        return CheckResult("qstash keys", False, "QSTASH_CURRENT_SIGNING_KEY or QSTASH_NEXT_SIGNING_KEY is empty",
                           "copy both from the Upstash console (QStash → Signing keys)")
    url, body = "https://vidpipe.invalid/doctor", "{}"
    try:
        for key in (current, following):
            token = _qstash_style_signature(key, url, body)
            Receiver(current, following).verify(signature=token, body=body, url=url)
    except SignatureError as error:
        return CheckResult("qstash keys", False, f"the signing keys do not verify a signature: {error}",
                           "copy both keys again from the Upstash console")
    return CheckResult("qstash keys", True, "current and next signing keys verify signatures")


def _qstash_style_signature(key: str, url: str, body: str) -> str:
    import base64
    import hashlib

    now = int(time.time())
    digest = base64.urlsafe_b64encode(hashlib.sha256(body.encode()).digest()).decode().rstrip("=")
    claims = {"iss": "Upstash", "sub": url, "exp": now + 300, "nbf": now, "iat": now, "jti": "doctor", "body": digest}
    return jwt.encode(claims, key, algorithm="HS256")


def check_model_server(name: str, url: str | None, env: str, *, required: bool, wake_seconds: float,
                       client: httpx.Client) -> CheckResult:
    if not url:
        detail = f"{env} is unset" + ("" if required else " (optional)")
        return CheckResult(name, not required, detail, f"set {env} to the server's base URL", required=required)
    deadline = time.monotonic() + wake_seconds
    waited = False
    while True:
        outcome = _probe(url, client)
        if outcome is None:
            woke = " (woke up)" if waited else ""
            return CheckResult(name, True, f"{url} answers{woke}", required=required)
        if not outcome[0] or time.monotonic() >= deadline:
            fix = _wake_fix(url, env, wake_seconds) if outcome[0] or _is_local(url) else f"check {env}"
            return CheckResult(name, False, f"{url}: {outcome[1]}", fix, required=required)
        waited = True
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))


def _is_local(url: str) -> bool:
    return httpx.URL(url).host in ("127.0.0.1", "localhost", "::1")


def _wake_fix(url: str, env: str, wake_seconds: float) -> str:
    if _is_local(url):
        return f"start the reference model servers (make run) or point {env} elsewhere"
    return f"it did not wake within {wake_seconds:.0f} s: open {url} in a browser, or raise --wake-seconds"


def _probe(url: str, client: httpx.Client) -> tuple[bool, str] | None:
    """None when the server answers; else (worth waiting for, why)."""
    base = url.rstrip("/")
    for path in ("/health", "/v1/models"):
        try:
            response = client.get(base + path)
        except httpx.TimeoutException:
            return True, "no answer in time (asleep or starting)"
        except httpx.ConnectError as error:
            if _is_local(url):
                return False, f"nothing listens there ({error})"  # a local server is not asleep: it is not running
            return True, f"connection failed ({error}); asleep, starting or wrong URL"
        except httpx.HTTPError as error:
            return False, f"{type(error).__name__}: {error}"
        if response.status_code < 300:
            return None
        if response.status_code in WAKING_STATUSES:
            return True, f"answered {response.status_code} (loading or asleep)"
        if response.status_code in (401, 403):
            return False, f"refused our credentials ({response.status_code}); check HF_TOKEN / WHISPER_API_KEY"
    return False, f"answered {response.status_code} on /health and /v1/models"


def check_auth(settings: Settings, client: httpx.Client) -> CheckResult:
    if settings.jwt_jwks_url:
        try:
            response = client.get(settings.jwt_jwks_url)
            keys = response.json().get("keys", []) if response.status_code == 200 else []
        except (httpx.HTTPError, ValueError) as error:
            return CheckResult("auth", False, f"JWKS {settings.jwt_jwks_url} unreachable: {error}",
                               "fix VIDPIPE_JWT_JWKS_URL")
        if not keys:
            return CheckResult("auth", False, f"JWKS {settings.jwt_jwks_url} has no keys ({response.status_code})",
                               "fix VIDPIPE_JWT_JWKS_URL")
        return CheckResult("auth", True, f"JWKS with {len(keys)} key(s); role at {settings.jwt_role_claim}")
    from api.settings import DEV_JWT_SECRET

    if settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET:
        return CheckResult("auth", True, "HS256 with the development secret (python -m api.token mints tokens)")
    return CheckResult("auth", True, f"HS256 with VIDPIPE_JWT_SECRET; role at {settings.jwt_role_claim}")


def check_notifications(settings: Settings, client: httpx.Client) -> CheckResult:
    if not settings.push_enabled:
        return CheckResult("notifications", True, "in-app only (ONESIGNAL_REST_API_KEY unset)", required=False)
    assert settings.onesignal_rest_api_key is not None
    url = f"{settings.onesignal_api_url.rstrip('/')}/notifications"
    try:
        response = client.get(url, params={"app_id": settings.onesignal_app_id, "limit": 1},
                              headers={"Authorization": f"Basic {settings.onesignal_rest_api_key.get_secret_value()}"})
    except httpx.HTTPError as error:
        return CheckResult("notifications", False, f"OneSignal unreachable at {url}: {error}",
                           "check ONESIGNAL_API_URL and the network; pushes fail (queues do not)", required=False)
    if response.status_code != 200:
        return CheckResult("notifications", False, f"OneSignal answered {response.status_code}",
                           "check ONESIGNAL_APP_ID and ONESIGNAL_REST_API_KEY (Settings → Keys & IDs)",
                           required=False)
    return CheckResult("notifications", True, "OneSignal accepts the app id and REST API key", required=False)


def run_checks(settings: Settings, *, wake_seconds: float, report: Callable[[CheckResult], None]) -> list[CheckResult]:
    results: list[CheckResult] = []

    def record(result: CheckResult) -> None:
        results.append(result)
        report(result)

    record(check_variables(settings))
    for result in check_tools():
        record(result)
    try:
        view = open_view(settings.event_store_env())
    except Exception as error:  # noqa: BLE001 - the database may be down or the URL wrong
        record(CheckResult("database", False, f"cannot open: {type(error).__name__}: {error}",
                           "start the database or fix DATABASE_URL"))
    else:
        record(check_database(settings, view))
        view.close()
    record(check_qstash(settings))
    record(check_signing_keys(settings))
    with httpx.Client(timeout=PROBE_TIMEOUT_SECONDS) as client:
        for name, field, env, required in (
            ("whisper", "whisper_url", "WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL", True),
            ("bge", "bge_url", "BGE_HG_EMBEDDING_SERVER_API_URL", True),
            ("e5", "e5_url", "E5_HG_EMBEDDING_SERVER_API_URL", False),
        ):
            if field in Settings.model_fields:
                record(check_model_server(name, getattr(settings, field), env, required=required,
                                          wake_seconds=wake_seconds, client=client))
        try:
            record(check_storage(build_storage(settings)))
        except Exception as error:  # noqa: BLE001 - bad credentials, unreachable service
            record(CheckResult("storage", False, f"{type(error).__name__}: {error}",
                               "check VIDPIPE_STORAGE_DIR or MEGA_EMAIL/MEGA_PASSWORD"))
        record(_storage_use(settings))
        record(check_auth(settings, client))
        record(check_notifications(settings, client))
    record(check_leadership(settings))
    return results


def check_leadership(settings: Settings) -> CheckResult:
    """Which process leads each follower of the log (:mod:`projections.leadership`); a warning where none does."""
    names = ["queue_status", "notifications", "moments", "dispatcher", *(["push"] if settings.push_enabled else [])]
    keys = {f"{VideoProcessing.name}:{name}": name for name in names}
    leadership = leadership_for(settings.database)
    try:
        holders = leadership.holders(list(keys))
    except Exception as error:  # noqa: BLE001 - the database check above says why
        return CheckResult("leadership", False, f"not read: {type(error).__name__}: {error}", required=False)
    finally:
        leadership.close()
    detail = "; ".join(f"{name}: {holders[key] or 'nobody'}" for key, name in keys.items())
    idle = [name for key, name in keys.items() if holders[key] is None]
    if idle:
        return CheckResult("leadership", False, detail,
                           f"nothing applies or publishes {', '.join(idle)}: run make project / make dispatch, "
                           "or an API with VIDPIPE_RUN_FOLLOWERS=true", required=False)
    return CheckResult("leadership", True, detail, required=False)


def _storage_use(settings: Settings) -> CheckResult:
    """Referenced and orphaned files and bytes (:mod:`api.storage_report`); a warning at worst."""
    try:
        core = build_core(settings)
    except Exception as error:  # noqa: BLE001 - the database check above says why
        return CheckResult("storage use", False, f"not counted: {type(error).__name__}: {error}", required=False)
    try:
        return check_storage_hygiene(build_sweeper(settings, core, build_storage(settings)))
    except Exception as error:  # noqa: BLE001 - storage or database unreachable: reported above
        return CheckResult("storage use", False, f"not counted: {type(error).__name__}: {error}", required=False)
    finally:
        core.close()


def line(result: CheckResult) -> str:
    mark = "ok  " if result.ok else ("FAIL" if result.required else "warn")
    fix = f"  → fix: {result.fix}" if not result.ok and result.fix else ""
    return f"{mark}  {result.name:<14} {result.detail}{fix}"


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--wake-seconds", type=float, default=90.0,
                        help="how long a sleeping model server gets to wake up (default 90)")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except (VidpipeError, ValueError) as error:
        print(f"FAIL  configuration  {error}  → fix: set the variables named above (README → Configuration)", file=out)
        return 2
    print(f"ok    configuration  {settings.environment}; database {settings.database.dialect}", file=out)
    results = run_checks(settings, wake_seconds=args.wake_seconds, report=lambda r: print(line(r), file=out, flush=True))
    failed = [r.name for r in results if not r.ok and r.required]
    print(f"{'not ready' if failed else 'ready'}: {len(results) + 1 - len(failed)} of {len(results) + 1} checks passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""), file=out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
