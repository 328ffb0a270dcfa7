"""``vidpipe-espeak-ng``: espeak-ng's command line over the packaged libespeak-ng."""

from __future__ import annotations

import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest

COMMAND = [sys.executable, "-m", "local.espeak"]
SENTENCE = "Energy is conserved in a closed system."


def speak(tmp_path: Path, *arguments: str, name: str = "out.wav", stdin: str | None = None) -> tuple[Path, float]:
    target = tmp_path / name
    subprocess.run([*COMMAND, "-w", str(target), *arguments], check=True, input=stdin, text=True,
                   capture_output=True, timeout=60)
    with wave.open(str(target)) as clip:
        assert (clip.getnchannels(), clip.getsampwidth(), clip.getframerate()) == (1, 2, 22050)
        return target, clip.getnframes() / clip.getframerate()


def test_speaks_a_sentence_into_a_16_bit_mono_wav(tmp_path: Path) -> None:
    _, seconds = speak(tmp_path, SENTENCE)
    assert 1.5 < seconds < 4.5


def test_speed_and_ssml_breaks_change_the_length(tmp_path: Path) -> None:
    _, normal = speak(tmp_path, "-s", "175", SENTENCE, name="normal.wav")
    _, slow = speak(tmp_path, "-s", "100", SENTENCE, name="slow.wav")
    assert slow > normal * 1.4
    _, plain = speak(tmp_path, "-m", "<speak>One.Two.</speak>", name="plain.wav")
    _, paused = speak(tmp_path, "-m", '<speak>One.<break time="2000ms"/>Two.</speak>', name="paused.wav")
    assert paused - plain > 1.5


def test_voices_and_stdin(tmp_path: Path) -> None:
    _, seconds = speak(tmp_path, "-v", "en-us", name="us.wav", stdin=SENTENCE)
    assert seconds > 1.5


def test_an_unknown_voice_and_a_missing_target_are_refused(tmp_path: Path) -> None:
    done = subprocess.run([*COMMAND, "-v", "xx-nonsense", "-w", str(tmp_path / "x.wav"), "hi"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no voice 'xx-nonsense'" in done.stderr
    done = subprocess.run([*COMMAND, "hi"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "-w FILE" in done.stderr


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng on PATH to compare with")
def test_as_long_as_the_real_espeak_ng(tmp_path: Path) -> None:
    real = tmp_path / "real.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(real), SENTENCE], check=True, timeout=60)
    with wave.open(str(real)) as clip:
        expected = clip.getnframes() / clip.getframerate()
    _, ours = speak(tmp_path, "-s", "150", SENTENCE)
    assert ours == pytest.approx(expected, rel=0.1)
