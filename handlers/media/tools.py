"""Where ffmpeg, ffprobe and espeak-ng come from: the one place that finds them.

Every caller that runs one of these programs (the steps, the local
Cloudinary stand-in, ``make run``, ``make demo``, ``make doctor``, the
benchmarks and the tests' media) asks :func:`resolve` for it, which looks,
in this order:

1. the explicit setting, ``VIDPIPE_FFMPEG`` / ``VIDPIPE_FFPROBE`` /
   ``VIDPIPE_ESPEAK`` (a path, or a name looked up on ``PATH``), for
   operators who bring their own builds; when set, it is the only answer:
   a wrong value is reported, never silently replaced;
2. the packaged program ``make install`` put in the virtualenv, from wheels
   that carry the binaries (no system package, no download at run time):
   ffmpeg from ``imageio-ffmpeg``; ffprobe as ``vidpipe-ffprobe``
   (:mod:`handlers.media.avprobe`, ffprobe's JSON read with PyAV's
   libavformat); espeak-ng as ``vidpipe-espeak-ng`` (:mod:`local.espeak`,
   over the libespeak-ng of ``espeakng-loader``);
3. the program of that name on ``PATH`` (``apt-get install ffmpeg
   espeak-ng``, Homebrew, ...).

A tool that is not found is a :class:`Tool` whose ``path`` is ``None``,
with the reason and the fix an operator reads (``make run`` refuses to start
with one line per missing tool; ``make doctor`` lists them); asking a
missing tool for its path (:meth:`Tool.require`) raises :class:`ToolMissing`,
a :class:`PermanentError` whose message carries that fix.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from handlers.errors import PermanentError

FFMPEG, FFPROBE, ESPEAK = "ffmpeg", "ffprobe", "espeak-ng"
TOOL_NAMES = (FFMPEG, FFPROBE, ESPEAK)

PACKAGED_COMMANDS = {FFPROBE: "vidpipe-ffprobe", ESPEAK: "vidpipe-espeak-ng"}
"""The console scripts (``pyproject.toml``) that stand in for a tool when its wheel is installed."""

PACKAGES = {FFMPEG: "imageio-ffmpeg", FFPROBE: "av", ESPEAK: "espeakng-loader"}
"""The wheel that carries each tool (or the library its packaged command runs on)."""

PACKAGE_LABELS = {FFMPEG: "imageio-ffmpeg", FFPROBE: "PyAV", ESPEAK: "espeakng-loader"}

PACKAGE_MODULES = {FFMPEG: "imageio_ffmpeg", FFPROBE: "av", ESPEAK: "espeakng_loader"}
"""The module each of those wheels installs: absent, the tool is not packaged here."""

VARIABLES = {FFMPEG: "VIDPIPE_FFMPEG", FFPROBE: "VIDPIPE_FFPROBE", ESPEAK: "VIDPIPE_ESPEAK"}

SYSTEM_PACKAGES = "apt-get install ffmpeg espeak-ng; brew install ffmpeg espeak-ng"


class ToolSettings(BaseSettings):
    """Which ffmpeg, ffprobe and espeak-ng to run; unset, the packaged ones, else those on ``PATH``."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, frozen=True, use_attribute_docstrings=True
    )

    ffmpeg: str | None = Field(default=None, alias="VIDPIPE_FFMPEG")
    """ffmpeg to run (a path, or a name on ``PATH``): compress, audio, cutting at silences, the demo clip.
    Unset: imageio-ffmpeg's binary, else ``ffmpeg`` on ``PATH``."""

    ffprobe: str | None = Field(default=None, alias="VIDPIPE_FFPROBE")
    """ffprobe to run (a path, or a name on ``PATH``) to read uploads and results. Unset:
    ``vidpipe-ffprobe`` (ffprobe's JSON read with PyAV), else ``ffprobe`` on ``PATH``."""

    espeak: str | None = Field(default=None, alias="VIDPIPE_ESPEAK")
    """espeak-ng to run (a path, or a name on ``PATH``) to speak the demo's and the tests' lectures. Unset:
    ``vidpipe-espeak-ng`` (espeakng-loader's libespeak-ng), else ``espeak-ng`` on ``PATH``."""

    def setting(self, tool: str) -> str | None:
        return {FFMPEG: self.ffmpeg, FFPROBE: self.ffprobe, ESPEAK: self.espeak}[tool]


@dataclass(frozen=True)
class Tool:
    """One program, where it was found (``path``, ``None`` when it was not) and through what (``source``)."""

    name: str
    path: str | None
    source: str
    """``VIDPIPE_FFMPEG`` (the setting), the wheel's name (packaged), ``PATH``, or ``-`` when not found."""
    problem: str | None = None
    """Why it was not found, when it was not."""

    @property
    def found(self) -> bool:
        return self.path is not None

    @property
    def fix(self) -> str:
        """What an operator does about a missing tool."""
        variable = VARIABLES[self.name]
        if self.source == variable:
            return f"set {variable} to an existing {self.name} program, or unset it to use the packaged one"
        return (f"run make install (it installs {PACKAGE_LABELS[self.name]}, which carries it), "
                f"or install {self.name} ({SYSTEM_PACKAGES}), or set {variable} to one")

    def require(self) -> str:
        """The path to run; :class:`ToolMissing` (with the fix) when there is none."""
        if self.path is None:
            raise ToolMissing(self)
        return self.path

    def version(self, timeout: float = 15.0) -> str:
        """The first line the program prints about its version (a failure to run it, said as such)."""
        if self.path is None:
            return "not found"
        flag = "--version" if self.name == ESPEAK else "-version"
        try:
            done = subprocess.run([self.path, flag], capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"does not run: {error}"
        lines = (done.stdout or done.stderr).strip().splitlines()
        if done.returncode != 0 or not lines:
            return f"does not run: exit status {done.returncode} {' '.join(lines[-1:])}".strip()
        return lines[0].split(" Copyright")[0].split("  Data at:")[0].strip()

    def describe(self) -> str:
        """``ffmpeg: /path (imageio-ffmpeg)``, or why it is missing."""
        if self.path is None:
            return f"{self.name}: not found ({self.problem})"
        return f"{self.name}: {self.path} ({self.source})"


class ToolMissing(PermanentError):
    """A program vidpipe needs is not there; the message names it and says how to get it."""

    def __init__(self, tool: Tool) -> None:
        super().__init__(f"{tool.name} is not installed or not runnable ({tool.problem}): {tool.fix}")
        self.tool = tool


# ------------------------------------------------------------------ resolving
def resolve(name: str, settings: ToolSettings | None = None) -> Tool:
    """Find ``name`` (one of :data:`TOOL_NAMES`): setting, then packaged, then ``PATH``."""
    if name not in TOOL_NAMES:
        raise ValueError(f"unknown tool {name!r}; known: {', '.join(TOOL_NAMES)}")
    settings = settings or ToolSettings()
    variable = VARIABLES[name]
    configured = settings.setting(name)
    if configured:
        path = _executable(configured)
        if path is None:
            return Tool(name, None, variable, f"{variable}={configured} is not an executable program")
        return Tool(name, path, variable)
    packaged = _packaged(name)
    if packaged is not None:
        return Tool(name, packaged, PACKAGE_LABELS[name])
    on_path = shutil.which(name)
    if on_path is not None:
        return Tool(name, on_path, "PATH")
    return Tool(name, None, "-", f"{PACKAGE_LABELS[name]} is not installed and there is no {name} on PATH")


def resolve_all(settings: ToolSettings | None = None) -> list[Tool]:
    """Every tool, in :data:`TOOL_NAMES` order."""
    settings = settings or ToolSettings()
    return [resolve(name, settings) for name in TOOL_NAMES]


def ffmpeg(settings: ToolSettings | None = None) -> str:
    """The ffmpeg to run; :class:`ToolMissing` when there is none."""
    return resolve(FFMPEG, settings).require()


def ffprobe(settings: ToolSettings | None = None) -> str:
    """The ffprobe to run; :class:`ToolMissing` when there is none."""
    return resolve(FFPROBE, settings).require()


def espeak(settings: ToolSettings | None = None) -> str:
    """The espeak-ng to run; :class:`ToolMissing` when there is none."""
    return resolve(ESPEAK, settings).require()


def _executable(value: str) -> str | None:
    """``value`` as a runnable path: itself when it names a file, else looked up on ``PATH``."""
    if os.sep in value or (os.altsep and os.altsep in value):
        path = Path(value).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(value)


def _packaged(name: str) -> str | None:
    if name == FFMPEG:
        return packaged_ffmpeg()
    if importlib.util.find_spec(PACKAGE_MODULES[name]) is None:
        return None
    if name == ESPEAK and not _espeak_library_present():
        return None
    return _console_script(PACKAGED_COMMANDS[name])


def packaged_ffmpeg() -> str | None:
    """The ffmpeg binary inside the imageio-ffmpeg wheel (never a system one; ``None`` without the wheel)."""
    spec = importlib.util.find_spec(PACKAGE_MODULES[FFMPEG])
    if spec is None or spec.origin is None:
        return None
    return _binary_in(Path(spec.origin).parent / "binaries")


@lru_cache(maxsize=4)
def _binary_in(binaries: Path) -> str | None:
    found = sorted(p for p in binaries.glob("ffmpeg*") if p.is_file() and os.access(p, os.X_OK))
    return str(found[-1]) if found else None


def _espeak_library_present() -> bool:
    spec = importlib.util.find_spec(PACKAGE_MODULES[ESPEAK])
    if spec is None or spec.origin is None:
        return False
    folder = Path(spec.origin).parent
    return (folder / "espeak-ng-data").is_dir() and any(folder.glob("*espeak-ng*.*"))


def _console_script(command: str) -> str | None:
    """The installed console script ``command``: beside this interpreter (the virtualenv), else on ``PATH``."""
    beside = Path(sys.executable).parent / command
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(command)
