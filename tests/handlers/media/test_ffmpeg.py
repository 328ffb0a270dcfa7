"""ffmpeg for real on generated media: compression, speech audio, silences, progress, cancellation."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.errors import MediaError, PermanentError, StepCancelled
from handlers.media.ffmpeg import (
    Silence,
    compress,
    detect_silences,
    extract_audio,
    plan_cuts,
    run_ffmpeg,
    split_at_silences,
)
from handlers.media.probe import probe
from handlers.steps import StepContext
from tests import mediafiles


class Recorder(StepContext):
    """A step context that records the progress it is given and the processes it watches."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        super().__init__(lambda percent, detail: self.seen.append(percent), min_interval=0)
        self.watched: list[subprocess.Popen[Any]] = []

    def watch_process(self, process: subprocess.Popen[Any]) -> None:
        self.watched.append(process)
        super().watch_process(process)


def lecture_speech(media_dir: Path) -> Path:
    """About 12 s of espeak-ng speech: four sentences with 1.5 s pauses between them."""
    return mediafiles.speech_audio(media_dir, mediafiles.LECTURE_SENTENCES, pause_seconds=1.5)


# ------------------------------------------------------------------ compress
def test_compress_caps_1080p_at_720p_h264_aac_faststart(media_dir: Path, tmp_path: Path) -> None:
    source = mediafiles.lecture_video(media_dir, 2, size="1920x1080", fps=10)
    target = tmp_path / "out.mp4"
    context = Recorder()
    compress(source, target, context, probe(source).duration)

    info = probe(target)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height) == (1280, 720)
    assert info.duration == pytest.approx(2.0, abs=0.15)
    assert target.stat().st_size < source.stat().st_size
    boxes = mediafiles.top_level_boxes(target)
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    assert mediafiles.top_level_boxes(source).index("moov") > mediafiles.top_level_boxes(source).index("mdat")
    assert context.seen == sorted(set(context.seen))
    assert context.seen[-1] >= 95


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("854x480", (854, 480)),  # never upscaled
        ("1080x1920", (720, 1280)),  # portrait: the shorter side is capped
        ("640x361", (640, 360)),  # dimensions stay even
    ],
)
def test_compress_keeps_aspect_and_even_dimensions(
    media_dir: Path, tmp_path: Path, size: str, expected: tuple[int, int]
) -> None:
    source = mediafiles.lecture_video(media_dir, 1, size=size, fps=5)
    target = tmp_path / "out.mp4"
    compress(source, target, None, None)
    info = probe(target)
    assert (info.width, info.height) == expected


def test_compress_keeps_a_video_without_sound_silent(media_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    compress(mediafiles.video_without_audio(media_dir), target, None, 2.0)
    info = probe(target)
    assert info.has_video and not info.has_audio


# ------------------------------------------------------------------ audio
def test_extract_audio_is_mono_16khz_opus_in_ogg(media_dir: Path, tmp_path: Path) -> None:
    source = mediafiles.lecture_video(media_dir, 2, size="320x240", fps=10)
    target = tmp_path / "audio.ogg"
    context = Recorder()
    extract_audio(source, target, context, 2.0)

    info = probe(target)
    assert info.format_name == "ogg" and info.audio_codec == "opus"
    assert not info.has_video
    assert info.audio_channels == 1
    assert mediafiles.opus_head(target) == (1, 16000)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert target.stat().st_size < 20_000  # ~24 kbit/s
    assert context.seen and context.seen[-1] >= 95


def test_extract_audio_from_a_silent_video_is_a_media_error(media_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError) as failed:
        extract_audio(mediafiles.video_without_audio(media_dir), tmp_path / "a.ogg", None, 2.0)
    message = str(failed.value)
    assert message.startswith("Could not extract the sound track: ")
    assert "matches no streams" in message
    assert " @ 0x" not in message


# ------------------------------------------------------------------ running ffmpeg
def test_a_missing_ffmpeg_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="ffmpeg is not installed"):
        run_ffmpeg(["-version"], None, ffmpeg=str(tmp_path / "no-ffmpeg"))


def test_cancelling_kills_ffmpeg_within_a_second(media_dir: Path, tmp_path: Path) -> None:
    source = mediafiles.lecture_video(media_dir, 6, size="1920x1080", fps=10)
    context = Recorder()
    cancelled_at: list[float] = []

    def cancel_soon() -> None:
        time.sleep(0.5)
        cancelled_at.append(time.monotonic())
        context.cancel()

    canceller = threading.Thread(target=cancel_soon)
    canceller.start()
    with pytest.raises(StepCancelled):
        # veryslow: far longer than half a second, so the cancellation lands mid-run
        compress(source, tmp_path / "out.mp4", context, 6.0, preset="veryslow")
    stopped = time.monotonic()
    canceller.join()
    assert stopped - cancelled_at[0] < 1.0
    (process,) = context.watched
    assert process.poll() is not None


def test_a_cancellation_flag_alone_stops_ffmpeg_between_progress_lines() -> None:
    context = Recorder()
    threading.Timer(0.3, context.cancelled.set).start()
    started = time.monotonic()
    with pytest.raises(StepCancelled):
        # -re: read the endless test source in real time, so this would run for a minute
        run_ffmpeg(["-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-t", "60", "-f", "null", "-"],
                   context, duration=60)
    assert time.monotonic() - started < 1.5
    (process,) = context.watched
    assert process.poll() is not None


def test_progress_is_scaled_into_the_span(media_dir: Path) -> None:
    context = Recorder()
    run_ffmpeg(["-f", "lavfi", "-i", "sine", "-t", "2", "-f", "null", "-"], context, duration=2, span=(40, 60))
    assert context.seen and all(40 <= p <= 60 for p in context.seen)
    assert context.seen[-1] == 60


# ------------------------------------------------------------------ silences
def test_detect_silences_finds_the_pauses_between_sentences(media_dir: Path) -> None:
    silences = detect_silences(lecture_speech(media_dir), min_silence_seconds=0.8)
    pauses = [s for s in silences if s.end - s.start >= 1.2]
    assert len(pauses) == 3, silences
    assert all(s.end - s.start == pytest.approx(1.5, abs=0.2) for s in pauses)


def test_split_at_silences_cuts_in_pauses_and_covers_everything(media_dir: Path, tmp_path: Path) -> None:
    audio = tmp_path / "lecture.ogg"
    extract_audio(lecture_speech(media_dir), audio, None, None)
    total = probe(audio).duration
    assert total is not None
    silences = detect_silences(audio, min_silence_seconds=0.8)

    context = Recorder()
    pieces = split_at_silences(audio, tmp_path / "pieces", max_piece_seconds=5, context=context)

    assert len(pieces) >= 3
    assert pieces[0].start == 0 and pieces[-1].end == pytest.approx(total)
    for before, after in zip(pieces, pieces[1:]):
        assert before.end == after.start  # no gaps, no overlaps
        assert any(s.start <= before.end <= s.end for s in silences), (before.end, silences)
    for piece in pieces:
        assert piece.end - piece.start <= 5
        info = probe(piece.path)
        assert info.audio_codec == "opus"
        assert info.duration == pytest.approx(piece.end - piece.start, abs=0.1)
    assert context.seen == sorted(set(context.seen)) and context.seen[-1] >= 95


def test_split_without_silence_cuts_hard_at_the_limit(media_dir: Path, tmp_path: Path) -> None:
    tone = mediafiles.tone_audio(media_dir, 7)
    pieces = split_at_silences(tone, tmp_path / "pieces", max_piece_seconds=3)
    assert [(p.start, p.end) for p in pieces] == [(0, 3), (3, 6), (6, pytest.approx(7, abs=0.05))]
    assert [probe(p.path).duration for p in pieces] == [pytest.approx(d, abs=0.1) for d in (3, 3, 1)]


def test_audio_that_fits_is_one_piece_and_not_copied(media_dir: Path, tmp_path: Path) -> None:
    audio = lecture_speech(media_dir)
    (piece,) = split_at_silences(audio, tmp_path / "pieces", max_piece_seconds=600)
    assert piece.path == audio and piece.start == 0
    assert not (tmp_path / "pieces").exists()


def test_audio_just_over_the_limit_within_the_slack_is_one_piece(media_dir: Path, tmp_path: Path) -> None:
    # plan_cuts makes no cut for audio at most 2 % over the limit; ffmpeg must not be asked for an empty cut
    # list (a 600.05 s sound track taken from a 10-minute upload failed its transcription that way)
    tone = mediafiles.tone_audio(media_dir, 7)
    (piece,) = split_at_silences(tone, tmp_path / "pieces", max_piece_seconds=6.9)
    assert piece.path == tone and piece.start == 0 and piece.end == pytest.approx(7, abs=0.05)
    assert not (tmp_path / "pieces").exists()


def test_plan_cuts_prefers_the_last_silence_before_the_limit() -> None:
    silences = [Silence(100, 102), Silence(500, 504), Silence(590, 592), Silence(800, 801)]
    assert plan_cuts(1000, silences, 600) == [591]
    # then 800.5 (the only silence in the next window), then a hard cut 600 s later
    assert plan_cuts(1500, silences, 600) == [591, 800.5, 1400.5]


def test_plan_cuts_ignores_silences_that_would_leave_a_tiny_piece() -> None:
    assert plan_cuts(700, [Silence(10, 12)], 600) == [600]
    assert plan_cuts(700, [Silence(10, 12)], 600, min_piece_seconds=5) == [11, 611]


@given(
    duration=st.floats(0.5, 20_000),
    max_piece=st.floats(1, 900),
    starts=st.lists(st.floats(0, 20_000), max_size=40),
    length=st.floats(0.1, 5),
)
def test_planned_pieces_cover_the_audio_and_respect_the_limit(
    duration: float, max_piece: float, starts: list[float], length: float
) -> None:
    silences = [Silence(s, min(duration, s + length)) for s in starts if s < duration]
    bounds = [0.0, *plan_cuts(duration, silences, max_piece), duration]
    slack = min(10.0, 0.02 * max_piece)  # audio barely over the limit stays whole
    assert all(0 < b - a <= max_piece + slack + 1e-6 for a, b in zip(bounds, bounds[1:]))


def test_audio_barely_over_the_limit_stays_one_piece() -> None:
    """A 600.02 s lecture (Opus padding) is not cut into 599 s + 1 s."""
    assert plan_cuts(600.02, [Silence(598.0, 599.0)], 600.0) == []
    assert plan_cuts(615.0, [Silence(598.0, 599.0)], 600.0) == [598.5]
