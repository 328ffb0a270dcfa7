"""The README's two commands, in a throw-away copy of the repository.

``make run`` is ``python -m local.stack`` and ``make demo`` is
``python -m local.demo``. The first test runs ``make install``, ``make run``
and ``make demo`` as a user would, from a copy of the working tree (tracked
and untracked-but-not-ignored files, no ``data/``, no ``../shared``), on a
``PATH`` that holds no ffmpeg, ffprobe or espeak-ng: one folder of links to
make, the shell and a few coreutils (Debian keeps the media tools in
``/usr/bin`` beside them, so ``/usr/bin`` itself cannot be on it). To stay
fast the copy reuses this virtualenv (``.venv`` is a link to it, as are the
TypeScript tests' ``node_modules``), so ``make install`` finds everything
installed and changes nothing; the media tools then come from the packages
``make install`` installed in it (imageio-ffmpeg, PyAV, espeakng-loader), and
the test checks that the stack says so. The stack gets free ports; the demo
makes its own lecture clip, uploads it and follows it to ``completed``; then
Ctrl-C (SIGINT to the launcher's process group) must stop everything: no
process of that run remains. A second test breaks one tool
(``VIDPIPE_FFMPEG=/nonexistent``): ``make run`` must refuse at once, naming
it and its fix, having started nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import reserve_port

ROOT = Path(__file__).resolve().parent.parent
PORT_VARIABLES = ("PORT", "LOCAL_QSTASH_PORT", "WHISPER_PORT", "EMBEDDING_PORT", "E5_EMBEDDING_PORT")
REDIRECTING = (
    "DATABASE_URL", "QSTASH_URL", "QSTASH_TOKEN", "QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY",
    "WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL", "BGE_HG_EMBEDDING_SERVER_API_URL", "E5_HG_EMBEDDING_SERVER_API_URL",
    "NEXTAUTH_URL", "VERCEL_URL", "CLOUDINARY_URL", "MEGA_EMAIL", "MEGA_PASSWORD", "ONESIGNAL_REST_API_KEY",
)
STARTED = re.compile(r"\[stack\] starting (\S+) \(pid (\d+)\)")
MEDIA_TOOLS = ("ffmpeg", "ffprobe", "espeak-ng")
BARE_PROGRAMS = ("make", "sh", "bash", "env", "test", "touch", "cat", "grep", "sed", "expand", "rm", "mkdir", "ls",
                 "uname", "dirname", "basename", "id")
"""What make and the Makefile's recipes call by name; everything else runs by absolute path."""


UNCOPIED = (".git", ".venv", "data", "tests/artifacts", ".pytest_cache", ".hypothesis", ".ruff_cache")


def _not_in_a_clone(directory: str, names: list[str]) -> set[str]:
    here = Path(directory).relative_to(ROOT)
    return {
        n for n in names
        if n == "__pycache__" or n.endswith((".pyc", ".egg-info")) or (here / n).as_posix() in UNCOPIED
    }


def copy_working_tree(target: Path) -> Path:
    """The files a clone of this working tree has (tracked, and new files not ignored)."""
    if not (ROOT / ".git").exists():  # not a checkout: everything but what a fresh clone lacks
        shutil.copytree(ROOT, target, ignore=_not_in_a_clone)
        return target
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def free_ports() -> dict[str, str]:
    sockets = [reserve_port() for _ in PORT_VARIABLES]
    ports = {name: str(s.getsockname()[1]) for name, s in zip(PORT_VARIABLES, sockets, strict=True)}
    for s in sockets:
        s.close()
    return ports


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    try:  # a zombie is dead, only not yet reaped
        return "\nState:\tZ" not in status.read_text()
    except OSError:
        return False


def processes_in(directory: Path) -> list[str]:
    """``pid cmdline`` of every process whose working directory is ``directory``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if Path(os.readlink(proc / "cwd")) == directory and alive(int(proc.name)):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append(f"{proc.name} {command}")
        except OSError:
            continue
    return found


@dataclass
class Launcher:
    """``python -m local.stack`` in the background, its output collected line by line."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self._collect, daemon=True)
        self.reader.start()

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None:
                raise AssertionError(f"the stack exited with {self.process.returncode}:\n{self.output[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout} s:\n{self.output[-4000:]}")
            time.sleep(0.2)

    def children(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in STARTED.findall(self.output)}

    def ctrl_c(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(60)


def bare_path(folder: Path) -> str:
    """A ``PATH`` of one folder: links to python3, make and :data:`BARE_PROGRAMS`, no media tool."""
    folder.mkdir()
    (folder / "python3").symlink_to(sys.executable)
    for name in BARE_PROGRAMS:
        found = shutil.which(name)
        if found is not None:
            (folder / name).symlink_to(found)
    path = str(folder)
    assert shutil.which("make", path=path), "make is not installed"
    assert not [tool for tool in MEDIA_TOOLS if shutil.which(tool, path=path)]
    return path


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    return copy_working_tree(tmp_path / "vidpipe")


@pytest.fixture
def installed_copy(repo_copy: Path) -> Path:
    """The copy with this virtualenv (and the node packages make install brings) linked in, as after make install."""
    venv = Path(sys.prefix)
    assert venv != Path(sys.base_prefix), "run the tests with the virtualenv's interpreter (make test)"
    assert (venv / ".installed").is_file(), f"{venv} was not made by make install"
    (repo_copy / ".venv").symlink_to(venv)
    for node_modules in (Path("tests/local/qstash_js/node_modules"), Path("web/node_modules")):
        assert (ROOT / node_modules).is_dir(), f"run make install first ({node_modules.parent}'s node packages)"
        (repo_copy / node_modules).symlink_to(ROOT / node_modules)
    # make install in the copy must find nothing to do: were it to reinstall, it would point the shared
    # virtualenv's editable install at this throw-away copy
    planned = subprocess.run(["make", "--dry-run", "install"], cwd=repo_copy, capture_output=True, text=True,
                             timeout=60, check=False)
    if planned.returncode != 0 or "Nothing to be done" not in planned.stdout:
        pytest.fail(f"{venv} is older than pyproject.toml or the node packages: run make install first\n"
                    f"{planned.stdout}{planned.stderr}")
    return repo_copy


@pytest.fixture
def bare_environment(environment: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """:func:`environment` on a ``PATH`` without ffmpeg, ffprobe or espeak-ng."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "IMAGEIO_FFMPEG_EXE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    return {**{k: v for k, v in environment.items() if k not in drop}, "PATH": bare_path(tmp_path / "bin")}


@pytest.fixture
def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in REDIRECTING and not k.startswith("VIDPIPE_")}
    env.update(free_ports(), PYTHONUNBUFFERED="1", LOG_LEVEL="INFO")
    return env


def _stopped(started: Launcher) -> Iterator[Launcher]:
    yield started
    process = started.process
    if process.poll() is None:  # the test failed before Ctrl-C: leave nothing behind
        started.ctrl_c()
    for pid in started.children().values():
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
    started.reader.join(10)
    assert process.stdout is not None
    process.stdout.close()


@pytest.fixture
def launcher(repo_copy: Path, environment: dict[str, str]) -> Iterator[Launcher]:
    """``python -m local.stack`` in the copy."""
    process = subprocess.Popen(
        [sys.executable, "-m", "local.stack"], cwd=repo_copy, env=environment, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    yield from _stopped(Launcher(process))


@pytest.fixture
def make_launcher(installed_copy: Path, bare_environment: dict[str, str]) -> Iterator[Launcher]:
    """``make install`` then ``make run`` in the copy, on a PATH without media tools."""
    installed = subprocess.run(["make", "install"], cwd=installed_copy, env=bare_environment, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=600, check=False)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    process = subprocess.Popen(
        ["make", "run"], cwd=installed_copy, env=bare_environment, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    yield from _stopped(Launcher(process))


@pytest.mark.timeout(420)
def test_make_install_run_and_demo_complete_without_media_tools_on_path_and_ctrl_c_leaves_nothing_behind(
    make_launcher: Launcher, installed_copy: Path, bare_environment: dict[str, str]
) -> None:
    launcher, repo_copy, environment = make_launcher, installed_copy, bare_environment
    launcher.wait_for("vidpipe is running", timeout=240)
    assert "dev token   ey" in launcher.output
    for tool, package in (("ffmpeg", "imageio-ffmpeg"), ("ffprobe", "PyAV"), ("espeak-ng", "espeakng-loader")):
        assert re.search(rf"^\[stack\] {tool}: /\S+ \({package}\)$", launcher.output, re.MULTILINE), launcher.output
    children = launcher.children()
    assert set(children) == {"qstash", "whisper", "embeddings", "e5", "api"}, launcher.output

    demo = subprocess.run(
        ["make", "demo"], check=False, cwd=repo_copy, env={**environment, "COLUMNS": "160"}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=300,
    )
    out = demo.stdout + demo.stderr
    assert demo.returncode == 0, f"{out}\n--- stack ---\n{launcher.output[-4000:]}"
    assert "processing completed" in out
    assert (repo_copy / "data" / "demo" / "lecture.mp4").is_file()
    queue_id = re.search(r"queue ([0-9a-f-]{36}): ", out)
    assert queue_id, out
    stored = repo_copy / "data" / "storage" / "dev-tutor" / queue_id.group(1)
    for artifact in ("compressed.mp4", "audio.ogg", "transcript.json", "transcript.srt", "transcript.vtt",
                     "transcript.txt"):
        assert (stored / artifact).is_file(), sorted(p.name for p in stored.iterdir())
        assert str(stored / artifact) in out.replace("\n", "") or artifact in out
    assert "thermodynamics" in out.lower(), out
    for fmt in ("json", "srt", "vtt", "txt"):
        assert f"/transcript?format={fmt}" in out

    # make waits for the stack to stop, then ends by the SIGINT itself, as in a terminal
    assert launcher.ctrl_c() in (0, -signal.SIGINT), launcher.output[-4000:]
    assert "[stack] stopped" in launcher.output
    left = {name: pid for name, pid in children.items() if alive(pid)}
    assert not left, f"still running after Ctrl-C: {left}"
    assert processes_in(repo_copy) == []


def _start_stack(repo_copy: Path, environment: dict[str, str]) -> Launcher:
    process = subprocess.Popen(
        [sys.executable, "-m", "local.stack"], cwd=repo_copy, env=environment, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    return Launcher(process)


@pytest.mark.timeout(600)
def test_ctrl_c_mid_processing_loses_nothing_and_a_restart_resumes_the_queue(
    launcher: Launcher, repo_copy: Path, environment: dict[str, str], tmp_path: Path
) -> None:
    import httpx

    from api.settings import Settings
    from api.token import mint
    from tests.mediafiles import lecture_video

    launcher.wait_for("vidpipe is running", timeout=240)
    api = f"http://127.0.0.1:{environment['PORT']}"
    headers = {"Authorization": f"Bearer {mint(Settings(), user='dev-tutor', role='tutor')}"}
    video = lecture_video(tmp_path, 30, size="1280x720")
    with video.open("rb") as handle:
        answer = httpx.post(f"{api}/api/video-processing/upload", headers=headers,
                            files={"file": ("lecture.mp4", handle, "video/mp4")}, timeout=60)
    assert answer.status_code == 202, answer.text
    queue_id = answer.json()["queue_id"]

    def status() -> dict[str, object]:
        return httpx.get(f"{api}/api/video-processing/status/{queue_id}", headers=headers, timeout=10).json()

    deadline = time.monotonic() + 120
    while status()["status"] != "processing":
        assert time.monotonic() < deadline, status()
        time.sleep(0.2)
    assert launcher.ctrl_c() == 0  # Ctrl-C while a step runs
    assert not processes_in(repo_copy)

    restarted = _start_stack(repo_copy, environment)
    try:
        restarted.wait_for("vidpipe is running", timeout=240)
        deadline = time.monotonic() + 300
        while (row := status())["status"] not in ("completed", "failed", "cancelled"):
            assert time.monotonic() < deadline, row
            time.sleep(0.5)
        assert row["status"] == "completed", (row.get("error"), row.get("steps"))
        events = httpx.get(f"{api}/api/video-processing/status/{queue_id}/events", headers=headers, timeout=10).json()
        completed = [e["step"] for e in events["events"] if e["event"] == "StepCompleted"]
        assert sorted(completed) == sorted(["compress", "audio-convert", "transcribe", "embed"])
    finally:
        if restarted.process.poll() is None:
            assert restarted.ctrl_c() == 0
        restarted.reader.join(10)
        assert restarted.process.stdout is not None
        restarted.process.stdout.close()
    assert not processes_in(repo_copy)


@pytest.mark.timeout(120)
def test_make_run_with_missing_tools_refuses_at_once_naming_each_with_its_fix_and_starts_nothing(
    installed_copy: Path, bare_environment: dict[str, str]
) -> None:
    from local.stack import _port_free

    env = {**bare_environment, "VIDPIPE_FFMPEG": "/nonexistent/ffmpeg", "VIDPIPE_FFPROBE": "no-such-ffprobe"}
    began = time.monotonic()
    done = subprocess.run(["make", "run"], cwd=installed_copy, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, check=False)
    elapsed = time.monotonic() - began
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    refusals = [line for line in out.splitlines() if line.startswith("[stack] cannot start: ")]
    assert refusals == [
        "[stack] cannot start: ffmpeg is missing: VIDPIPE_FFMPEG=/nonexistent/ffmpeg is not an executable program"
        " — fix: set VIDPIPE_FFMPEG to an existing ffmpeg program, or unset it to use the packaged one",
        "[stack] cannot start: ffprobe is missing: VIDPIPE_FFPROBE=no-such-ffprobe is not an executable program"
        " — fix: set VIDPIPE_FFPROBE to an existing ffprobe program, or unset it to use the packaged one",
    ], out
    assert "[stack] starting" not in out and "vidpipe is running" not in out, out
    assert not (installed_copy / "data").exists()
    assert processes_in(installed_copy) == []
    assert all(_port_free(int(env[name])) for name in PORT_VARIABLES)
    assert elapsed < 30, f"took {elapsed:.1f} s to refuse"
