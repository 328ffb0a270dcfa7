"""/healthz, /readyz, /metrics, /openapi.json, ``python -m api.doctor`` and ``python -m api.token``."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.parser import text_string_to_metric_families

from api import doctor
from api.auth import TokenVerifier
from api.errors import Forbidden, Unauthorized
from api.settings import DEV_JWT_SECRET, Settings
from api.token import mint
from handlers.providers.simulated import SimulatedProvider
from tests.api.conftest import Client
from tests.handlers.conftest import Pipeline
from tests.support import reserve_port

Served = Callable[..., Pipeline]
Clients = Callable[..., Client]
ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    sock = reserve_port()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def test_health_readiness_and_openapi(served: Served) -> None:
    pipeline = served()
    http = httpx.Client(base_url=pipeline.api.url)
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert set(ready.json()["checks"]) == {"database", "qstash", "storage"}
    spec = http.get("/openapi.json").json()
    assert "bearerAuth" in json.dumps(spec) or "HTTPBearer" in json.dumps(spec)
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            # every operation documents its success answer (200, 202, or 204 for a delete)
            assert any(code.startswith("2") for code in operation["responses"]), (method, path)
    assert http.get("/docs").status_code == 200
    missing = http.get("/no/such/endpoint")
    assert missing.status_code == 404 and "no such endpoint" in missing.json()["error"]
    http.close()


def test_readiness_names_what_is_down(served: Served) -> None:
    pipeline = served()
    pipeline.qstash.stop()
    http = httpx.Client(base_url=pipeline.api.url)
    response = http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["qstash"]
    assert "unreachable" in response.json()["checks"]["qstash"]["detail"]
    http.close()


def test_metrics_in_prometheus_text(served: Served, clients: Clients) -> None:
    pipeline = served({"transcribe": SimulatedProvider(transient_failures=1, retry_after=0.1)})
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload().json()["queue_id"]
    tutor.wait_for(qid, timeout=40)
    response = tutor.http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text) for s in family.samples
    }
    assert samples[("vidpipe_queues", (("status", "completed"),))] == 1
    assert samples[("vidpipe_queues", (("status", "failed"),))] == 0
    assert samples[("vidpipe_step_retries_total", (("step", "transcribe"),))] == 1
    assert samples[("vidpipe_step_duration_seconds_count", (("step", "embed"),))] == 1
    assert any(name == "vidpipe_follower_lag_events" for name, _ in samples)
    # the only process running the followers leads each of them
    assert samples[("vidpipe_follower_leading", (("follower", "VideoProcessing:dispatcher"),))] == 1
    assert samples[("vidpipe_follower_leading", (("follower", "VideoProcessing:queue_status"),))] == 1
    started = "vidpipe_step_deliveries_total", (("received", "started"), ("step", "transcribe"))
    assert samples[started] == 2  # the attempt that failed transiently and its retry
    assert samples[("vidpipe_step_deliveries_total", (("received", "started"), ("step", "embed")))] == 1
    assert samples[("vidpipe_step_deliveries_total", (("received", "redelivered"), ("step", "embed")))] == 0


def test_token_cli_mints_what_the_api_accepts(served: Served) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api.token", "--user", "tutor-x", "--role", "tutor"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    )
    token = result.stdout.strip()
    assert jwt.decode(token, DEV_JWT_SECRET, algorithms=["HS256"])["sub"] == "tutor-x"
    pipeline = served()
    response = httpx.get(f"{pipeline.api.url}/api/video-processing/queue", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    production = subprocess.run(
        [sys.executable, "-m", "api.token", "--user", "x"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "VIDPIPE_ENV": "production"},
    )
    assert production.returncode == 2


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, Ed25519PrivateKey]]:
    """A JWKS endpoint (as Supabase or Auth0 serve) with one Ed25519 public key."""
    private = Ed25519PrivateKey.generate()
    public_jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key()))
    body = json.dumps({"keys": [{**public_jwk, "kid": "k1", "alg": "EdDSA", "use": "sig"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", private
    server.shutdown()
    server.server_close()


def test_tokens_verified_with_a_jwks_url(jwks_server: tuple[str, Ed25519PrivateKey]) -> None:
    url, private = jwks_server
    settings = Settings(VIDPIPE_JWT_JWKS_URL=url, VIDPIPE_JWT_ROLE_CLAIM="app_metadata.role",
                        VIDPIPE_JWT_AUDIENCE="authenticated")
    verifier = TokenVerifier(settings)
    claims = {"sub": "u1", "aud": "authenticated", "app_metadata": {"role": "tutor"}, "exp": 4102444800}
    good = jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": "k1"})
    assert verifier.verify(good).owner_id == "u1"
    with pytest.raises(Forbidden):
        verifier.verify(jwt.encode({**claims, "app_metadata": {"role": "student"}}, private,
                                   algorithm="EdDSA", headers={"kid": "k1"}))
    with pytest.raises(Unauthorized, match="(?i)audience"):
        verifier.verify(jwt.encode({**claims, "aud": "other"}, private, algorithm="EdDSA", headers={"kid": "k1"}))
    with pytest.raises(Unauthorized):
        verifier.verify(mint(Settings(), "u1", "tutor"))  # an HS256 token is not accepted with a JWKS


class _Waking(BaseHTTPRequestHandler):
    calls = 0

    def do_GET(self) -> None:  # noqa: N802
        type(self).calls += 1
        asleep = type(self).calls <= 2
        self.send_response(503 if asleep else 200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "model is currently loading", "estimated_time": 1}' if asleep else b'{"ok": true}')

    def log_message(self, *args: object) -> None:
        pass


def test_doctor_prints_a_line_per_check_wakes_servers_and_fails_with_fixes(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = served()
    _Waking.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Waking)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    model_url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {
        "DATABASE_URL": pipeline.settings.database_url,
        "QSTASH_URL": pipeline.qstash.url,
        "VIDPIPE_STORAGE_DIR": pipeline.settings.storage_dir,
        "WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL": model_url,
        "BGE_HG_EMBEDDING_SERVER_API_URL": model_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    assert doctor.main(["--wake-seconds", "20"], out=out) == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("ready:")
    names = [line.split()[1] for line in lines[:-1]]
    assert names[:8] == ["configuration", "variables", "ffmpeg", "ffprobe", "espeak-ng", "database", "qstash", "qstash"]
    assert "(woke up)" in out.getvalue()
    leadership = next(line for line in lines if line.split()[1] == "leadership")
    assert leadership.startswith("ok    leadership") and "dispatcher: " in leadership  # the served app leads

    monkeypatch.setenv("QSTASH_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("ONESIGNAL_REST_API_KEY", "k")
    monkeypatch.setenv("ONESIGNAL_APP_ID", "a")
    monkeypatch.setenv("ONESIGNAL_API_URL", f"http://127.0.0.1:{closed_port()}/api/v1")
    out = io.StringIO()
    assert doctor.main(["--wake-seconds", "0"], out=out) == 1
    text = out.getvalue()
    assert "FAIL  qstash" in text and "fix: start the local server (make qstash)" in text
    assert "warn  notifications" in text
    assert text.splitlines()[-1].startswith("not ready") and "qstash" in text.splitlines()[-1]
    server.shutdown()
    server.server_close()


def test_doctor_reports_each_media_tool_with_path_source_and_version_and_a_missing_one_with_its_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in ("VIDPIPE_FFMPEG", "VIDPIPE_FFPROBE", "VIDPIPE_ESPEAK"):
        monkeypatch.delenv(variable, raising=False)
    found = {result.name: result for result in doctor.check_tools()}
    assert list(found) == ["ffmpeg", "ffprobe", "espeak-ng"]
    assert all(result.ok for result in found.values()), found
    assert re.fullmatch(r"/\S+ \(imageio-ffmpeg\): ffmpeg version \S+", found["ffmpeg"].detail), found["ffmpeg"]
    assert re.fullmatch(r"/\S+/vidpipe-ffprobe \(PyAV\): vidpipe-ffprobe \(PyAV .*\)", found["ffprobe"].detail)
    assert "(espeakng-loader): eSpeak NG text-to-speech: 1." in found["espeak-ng"].detail

    monkeypatch.setenv("VIDPIPE_FFMPEG", "/nonexistent/ffmpeg")
    monkeypatch.setenv("VIDPIPE_ESPEAK", "/nonexistent/espeak-ng")
    lines = [doctor.line(result) for result in doctor.check_tools()]
    assert lines[0] == ("FAIL  ffmpeg         not found: VIDPIPE_FFMPEG=/nonexistent/ffmpeg is not an executable "
                        "program  → fix: set VIDPIPE_FFMPEG to an existing ffmpeg program, or unset it to use the "
                        "packaged one")
    assert lines[1].startswith("ok    ffprobe ")
    assert lines[2].startswith("warn  espeak-ng      not found: VIDPIPE_ESPEAK=/nonexistent/espeak-ng")


def test_doctor_warns_when_nobody_leads_a_follower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/vidpipe.db")
    result = doctor.check_leadership(Settings())
    assert not result.ok and not result.required
    assert "dispatcher: nobody" in result.detail and "make dispatch" in result.fix
