"""ffprobe on real files, and the refusals a tutor reads when an upload is unusable."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.errors import MediaError, PermanentError
from handlers.media.probe import (
    MediaInfo,
    MediaLimits,
    format_duration,
    format_size,
    probe,
    validate_upload,
)
from tests import mediafiles


def lecture_info(**changes: object) -> MediaInfo:
    facts: dict[str, object] = dict(
        duration=600.0, size_bytes=50_000_000, has_video=True, has_audio=True, width=1280, height=720,
        video_codec="h264", audio_codec="aac", format_name="mov,mp4,m4a,3gp,3g2,mj2",
    )
    facts.update(changes)
    return MediaInfo(**facts)  # type: ignore[arg-type]


# ------------------------------------------------------------------ probing real files
def test_probe_describes_a_lecture_video(media_dir: Path) -> None:
    path = mediafiles.lecture_video(media_dir, 2, size="320x240", fps=10)
    info = probe(path)
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (320, 240)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert info.size_bytes == path.stat().st_size
    assert "mp4" in info.format_name
    validate_upload(info, MediaLimits())


def test_probe_sees_a_still_image_as_no_video(media_dir: Path) -> None:
    info = probe(mediafiles.png_as_mp4(media_dir))
    assert not info.has_video and not info.has_audio
    assert info.image_kind == "a PNG image"


def test_probe_of_the_jfk_recording(media_dir: Path) -> None:
    path = mediafiles.jfk_video(media_dir)
    if path is None:
        pytest.skip(f"{mediafiles.JFK_FLAC} is absent")
    info = probe(path)
    assert info.has_video and info.has_audio
    assert info.duration == pytest.approx(11.0, abs=1.0)


@pytest.mark.parametrize(
    "name",
    ["empty", "truncated", "truncated-faststart", "png-renamed", "audio-only", "no-audio", "half-second", "oversized"],
)
def test_every_bad_upload_is_refused_with_a_readable_reason(media_dir: Path, name: str) -> None:
    (bad,) = [b for b in mediafiles.bad_media(media_dir) if b.name == name]
    limits = MediaLimits(max_size_bytes=bad.max_size_bytes) if bad.max_size_bytes else MediaLimits()
    with pytest.raises(MediaError) as refused:
        validate_upload(probe(bad.path), limits)
    message = str(refused.value)
    for words in bad.reason_words:
        assert words in message
    assert "Traceback" not in message and "moov" not in message


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n" + bytes(200), "a PDF document"),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(200), "a ZIP archive or an Office document"),
        (b"These are my lecture notes, not a video.\n" * 5, "a text file"),
    ],
)
def test_unreadable_files_say_what_they_look_like(tmp_path: Path, content: bytes, kind: str) -> None:
    path = tmp_path / "lecture.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError, match=f"not a video we can read \\(it looks like {kind}\\)"):
        probe(path)


def test_random_bytes_are_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(MediaError, match="not a video we can read"):
        probe(path)


def test_a_missing_ffprobe_is_a_permanent_error(media_dir: Path) -> None:
    path = mediafiles.lecture_video(media_dir, 2, size="320x240", fps=10)
    with pytest.raises(PermanentError, match="ffprobe is not installed"):
        probe(path, ffprobe="/nonexistent/ffprobe")


# ------------------------------------------------------------------ limits and wording
def test_too_long_names_both_durations() -> None:
    limits = MediaLimits(max_duration_seconds=2 * 3600)
    with pytest.raises(MediaError, match=r"^The video is 3 h 20 min long; the limit is 2 h\.$"):
        validate_upload(lecture_info(duration=3 * 3600 + 20 * 60), limits)


def test_too_big_names_both_sizes() -> None:
    size = int(2.1 * 1024**3)
    with pytest.raises(MediaError, match=r"^The file is 2\.1 GB; the limit is 2 GB\.$"):
        validate_upload(lecture_info(size_bytes=size), MediaLimits())


def test_too_short() -> None:
    with pytest.raises(MediaError, match=r"only 0\.5 seconds long; it must be at least 1 second\."):
        validate_upload(lecture_info(duration=0.5), MediaLimits())


def test_size_is_checked_before_anything_else() -> None:
    info = lecture_info(size_bytes=3 * 1024**3, has_audio=False, duration=9 * 3600)
    with pytest.raises(MediaError, match="the limit is 2 GB"):
        validate_upload(info, MediaLimits())


def test_limits_are_inclusive() -> None:
    limits = MediaLimits(max_duration_seconds=3600, max_size_bytes=1000, min_duration_seconds=1.0)
    validate_upload(lecture_info(duration=3600.0, size_bytes=1000), limits)
    validate_upload(lecture_info(duration=1.0, size_bytes=1000), limits)


def test_an_unknown_duration_skips_the_duration_limits() -> None:
    validate_upload(lecture_info(duration=None), MediaLimits())


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "0.5 seconds"),
        (1.0, "1 second"),
        (45, "45 seconds"),
        (60, "1 min"),
        (12 * 60 + 5, "12 min 5 s"),
        (2 * 3600, "2 h"),
        (3 * 3600 + 20 * 60, "3 h 20 min"),
        (4 * 3600 + 1, "4 h 1 min"),  # over a limit never reads as equal to it
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_duration_rounds_down_under_a_limit() -> None:
    assert format_duration(0.96, round_up=False) == "0.9 seconds"


@pytest.mark.parametrize(
    ("size", "text"),
    [(512, "512 bytes"), (32 * 1024, "32 KB"), (350 * 1024**2, "350 MB"), (2 * 1024**3, "2 GB"), (2 * 1024**3 + 1, "2.1 GB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text
