"""The resolver of ffmpeg, ffprobe and espeak-ng: setting → packaged → PATH, and what a missing tool says.

The packaged tools are the real ones ``make install`` put in this virtualenv;
"not installed" is a wheel's module name that no package provides, and PATH
is a folder of this test's own small programs.
"""

from __future__ import annotations

import os
import stat
import subprocess
import wave
from pathlib import Path

import pytest

from handlers.errors import PermanentError
from handlers.media import tools
from handlers.media.tools import Tool, ToolMissing, ToolSettings, resolve, resolve_all


def program(folder: Path, name: str, body: str = 'echo "$0 version 1.0"') -> Path:
    """An executable shell script ``folder/name``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No VIDPIPE_* tool setting, no ``.env`` in the working directory, PATH = one empty folder of ours."""
    for variable in tools.VARIABLES.values():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


@pytest.fixture
def unpackaged(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine where none of the tools' wheels is installed."""
    for name in tools.TOOL_NAMES:
        monkeypatch.setitem(tools.PACKAGE_MODULES, name, "vidpipe_no_such_wheel")


# ------------------------------------------------------------------ order
def test_the_packaged_tools_are_found_without_anything_on_path(clean_env: Path) -> None:
    found = {tool.name: tool for tool in resolve_all()}
    assert found[tools.FFMPEG].source == "imageio-ffmpeg"
    assert "imageio_ffmpeg" in found[tools.FFMPEG].require()
    assert found[tools.FFPROBE].source == "PyAV"
    assert Path(found[tools.FFPROBE].require()).name == "vidpipe-ffprobe"
    assert found[tools.ESPEAK].source == "espeakng-loader"
    assert Path(found[tools.ESPEAK].require()).name == "vidpipe-espeak-ng"


def test_packaged_wins_over_path(clean_env: Path) -> None:
    program(clean_env, "ffmpeg")
    program(clean_env, "ffprobe")
    program(clean_env, "espeak-ng")
    for tool in resolve_all():
        assert tool.source != "PATH" and Path(tool.require()).parent != clean_env, tool


def test_path_is_the_last_resort(clean_env: Path, unpackaged: None) -> None:
    ffmpeg = program(clean_env, "ffmpeg")
    tool = resolve(tools.FFMPEG)
    assert (tool.path, tool.source) == (str(ffmpeg), "PATH")
    assert tool.version() == f"{ffmpeg} version 1.0"


def test_the_setting_wins_over_packaged_and_path(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    program(clean_env, "ffprobe")
    own = program(tmp_path / "opt", "my-ffprobe")
    monkeypatch.setenv("VIDPIPE_FFPROBE", str(own))
    tool = resolve(tools.FFPROBE)
    assert (tool.path, tool.source) == (str(own), "VIDPIPE_FFPROBE")


def test_a_setting_may_name_a_program_on_path(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = program(clean_env, "espeak")
    monkeypatch.setenv("VIDPIPE_ESPEAK", "espeak")
    assert resolve(tools.ESPEAK).path == str(own)


def test_settings_come_from_a_dot_env_file_too(clean_env: Path, tmp_path: Path) -> None:
    own = program(tmp_path / "opt", "ffmpeg")
    (tmp_path / ".env").write_text(f"VIDPIPE_FFMPEG={own}\n")
    assert resolve(tools.FFMPEG).path == str(own)


def test_explicit_settings_object_is_used_as_given(clean_env: Path, tmp_path: Path) -> None:
    own = program(tmp_path / "opt", "ffmpeg")
    assert tools.ffmpeg(ToolSettings(VIDPIPE_FFMPEG=str(own))) == str(own)


# ------------------------------------------------------------------ missing
def test_a_wrong_setting_is_reported_never_replaced(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program(clean_env, "ffmpeg")  # on PATH, and packaged too: neither may stand in for the operator's choice
    monkeypatch.setenv("VIDPIPE_FFMPEG", "/nonexistent/ffmpeg")
    tool = resolve(tools.FFMPEG)
    assert not tool.found and tool.source == "VIDPIPE_FFMPEG"
    assert tool.problem == "VIDPIPE_FFMPEG=/nonexistent/ffmpeg is not an executable program"
    assert "set VIDPIPE_FFMPEG to an existing ffmpeg program, or unset it" in tool.fix
    with pytest.raises(ToolMissing) as missing:
        tool.require()
    assert isinstance(missing.value, PermanentError)
    assert str(missing.value).startswith("ffmpeg is not installed or not runnable (VIDPIPE_FFMPEG=/nonexistent")


def test_a_setting_that_is_a_file_but_not_executable_is_missing(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    plain = tmp_path / "ffmpeg.txt"
    plain.write_text("not a program")
    monkeypatch.setenv("VIDPIPE_FFMPEG", str(plain))
    assert not resolve(tools.FFMPEG).found


def test_nothing_anywhere_says_how_to_get_it(clean_env: Path, unpackaged: None) -> None:
    for tool in resolve_all():
        assert not tool.found, tool
        assert tool.problem == f"{tools.PACKAGE_LABELS[tool.name]} is not installed and there is no {tool.name} on PATH"
        assert "run make install" in tool.fix and tools.VARIABLES[tool.name] in tool.fix
        assert tool.version() == "not found"
        assert tool.describe().startswith(f"{tool.name}: not found (")
    with pytest.raises(ToolMissing, match="espeak-ng is not installed"):
        tools.espeak()


def test_an_unknown_tool_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown tool 'sox'"):
        resolve("sox")


def test_a_program_that_fails_to_run_says_so(tmp_path: Path) -> None:
    broken = program(tmp_path, "ffmpeg", body="echo 'cannot load libavcodec.so.59' >&2; exit 127")
    version = Tool(tools.FFMPEG, str(broken), "PATH").version()
    assert version == "does not run: exit status 127 cannot load libavcodec.so.59"


# ------------------------------------------------------------------ the packaged programs work
def test_the_packaged_tools_run_and_tell_their_versions(clean_env: Path) -> None:
    versions = {tool.name: tool.version() for tool in resolve_all()}
    assert versions[tools.FFMPEG].startswith("ffmpeg version ") and "Copyright" not in versions[tools.FFMPEG]
    assert versions[tools.FFPROBE].startswith("vidpipe-ffprobe (PyAV ")
    assert versions[tools.ESPEAK].startswith("eSpeak NG text-to-speech: 1.")


def test_packaged_ffmpeg_encodes_what_the_steps_need(clean_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    subprocess.run([
        tools.ffmpeg(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=5",
        "-f", "lavfi", "-i", "sine=frequency=300", "-t", "1", "-c:v", "libx264", "-c:a", "aac", str(out),
    ], check=True, timeout=60)
    ogg = tmp_path / "clip.ogg"
    subprocess.run([tools.ffmpeg(), "-hide_banner", "-loglevel", "error", "-i", str(out), "-vn", "-c:a", "libopus",
                    "-f", "ogg", str(ogg)], check=True, timeout=60)
    from handlers.media.probe import probe

    video, audio = probe(out), probe(ogg)
    assert (video.video_codec, video.audio_codec, video.width) == ("h264", "aac", 160)
    assert (audio.audio_codec, audio.format_name, audio.has_video) == ("opus", "ogg", False)


def test_packaged_espeak_speaks_into_a_wav(clean_env: Path, tmp_path: Path) -> None:
    wav = tmp_path / "hello.wav"
    subprocess.run([tools.espeak(), "-w", str(wav), "Hello there."], check=True, timeout=60)
    with wave.open(str(wav)) as clip:
        assert (clip.getnchannels(), clip.getsampwidth()) == (1, 2)
        assert 0.5 < clip.getnframes() / clip.getframerate() < 3


def test_the_packaged_programs_need_nothing_from_path(clean_env: Path) -> None:
    """PATH is one empty folder here: the packaged programs run on absolute paths alone."""
    assert os.environ["PATH"] == str(clean_env)
    for tool in resolve_all():
        assert not tool.version().startswith("does not run"), tool
