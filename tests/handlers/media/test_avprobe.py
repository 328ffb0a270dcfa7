"""``vidpipe-ffprobe`` (ffprobe's JSON read with PyAV) against the real ffprobe, on the media the steps see."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from handlers.media.avprobe import main
from tests import mediafiles

COMMAND = [sys.executable, "-m", "handlers.media.avprobe"]
ARGUMENTS = ["-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
STREAM_FIELDS = ("index", "codec_type", "codec_name", "width", "height", "pix_fmt", "sample_rate", "channels",
                 "channel_layout", "avg_frame_rate", "duration", "nb_frames")
FORMAT_FIELDS = ("format_name", "duration", "size", "nb_streams")
REAL_FFPROBE = shutil.which("ffprobe")


def corpus(directory: Path) -> list[Path]:
    """Good lectures, speech, Opus audio and every file of the bad-media corpus."""
    speech = mediafiles.speech_audio(directory, ["Hello there.", "Goodbye."])
    opus = directory / "avprobe-speech.ogg"
    if not opus.is_file():
        mediafiles.ffmpeg("-i", str(speech), "-ac", "1", "-ar", "16000", "-c:a", "libopus", "-f", "ogg", str(opus))
    return [
        mediafiles.lecture_video(directory, 2, size="320x240", fps=10),
        mediafiles.lecture_video(directory, 2, size="320x240", fps=10, faststart=True),
        speech, opus, mediafiles.tone_audio(directory, 1),
        *(bad.path for bad in mediafiles.bad_media(directory)),
    ]


def described(command: list[str], path: Path) -> tuple[int, dict[str, Any] | None, str]:
    done = subprocess.run([*command, *ARGUMENTS, str(path)], capture_output=True, text=True, timeout=60)
    return done.returncode, (json.loads(done.stdout) if done.returncode == 0 else None), done.stderr


def fields(data: dict[str, Any]) -> dict[str, Any]:
    streams = [
        {key: s.get(key) for key in STREAM_FIELDS} | {"attached_pic": s.get("disposition", {}).get("attached_pic")}
        for s in data["streams"]
    ]
    return {"streams": streams, "format": {key: data["format"].get(key) for key in FORMAT_FIELDS}}


@pytest.mark.skipif(REAL_FFPROBE is None, reason="no ffprobe on PATH to compare with (apt-get install ffmpeg)")
def test_same_answers_as_the_real_ffprobe(media_dir: Path) -> None:
    assert REAL_FFPROBE is not None
    for path in corpus(media_dir):
        real_status, real, _ = described([REAL_FFPROBE], path)
        ours_status, ours, _ = described(COMMAND, path)
        assert ours_status == real_status, path.name
        if real is not None:
            assert ours is not None
            assert fields(ours) == fields(real), path.name


def test_value_types_are_ffprobes(media_dir: Path) -> None:
    status, data, _ = described(COMMAND, mediafiles.lecture_video(media_dir, 2, size="320x240", fps=10))
    assert status == 0 and data is not None
    video, audio = data["streams"]
    assert (video["codec_type"], video["codec_name"], video["width"], video["height"]) == ("video", "h264", 320, 240)
    assert (audio["codec_type"], audio["codec_name"], audio["sample_rate"], audio["channels"]) == (
        "audio", "aac", "44100", 1)
    assert video["avg_frame_rate"] == "10/1" and video["nb_frames"] == "20"
    assert float(data["format"]["duration"]) == pytest.approx(2.0, abs=0.1)
    assert "mp4" in data["format"]["format_name"].split(",")
    assert video["disposition"]["attached_pic"] == 0 and video["disposition"]["default"] == 1


def test_what_it_cannot_read_exits_1_with_the_reason(tmp_path: Path) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n" * 10)
    status, data, reason = described(COMMAND, notes)
    assert (status, data) == (1, None)
    assert str(notes) in reason and "Invalid data" in reason


def test_a_missing_file_exits_1(tmp_path: Path) -> None:
    status, _, reason = described(COMMAND, tmp_path / "absent.mp4")
    assert status == 1 and "absent.mp4" in reason


def test_show_streams_alone_and_version(media_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-v", "error", "-of", "json", "-show_streams", str(mediafiles.tone_audio(media_dir, 1))]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert list(shown) == ["streams"] and shown["streams"][0]["codec_name"] == "pcm_s16le"
    assert main(["-version"]) == 0
    assert capsys.readouterr().out.startswith("vidpipe-ffprobe (PyAV ")
    assert main([]) == 2
