"""``vidpipe-ffprobe``: ffprobe's JSON description of a media file, read with PyAV.

No wheel on PyPI ships ffprobe for Linux and macOS alike, but PyAV (already
installed: faster-whisper depends on it) carries FFmpeg's own libavformat,
which is what ffprobe reads files with. This command answers the one
question vidpipe asks ffprobe::

    vidpipe-ffprobe -v error -print_format json -show_format -show_streams FILE

with the same JSON shape and the same value types as ffprobe (numbers that
ffprobe writes as strings, such as ``duration``, ``sample_rate``,
``bit_rate`` and ``nb_frames``, are strings here too), for the fields the
code reads: each stream's ``index``, ``codec_type``, ``codec_name``,
``width``, ``height``, ``pix_fmt``, ``sample_rate``, ``channels``,
``channel_layout``, ``avg_frame_rate``, ``r_frame_rate``, ``time_base``,
``duration``, ``bit_rate``, ``nb_frames`` and ``disposition``; the format's
``filename``, ``nb_streams``, ``format_name``, ``format_long_name``,
``duration``, ``size`` and ``bit_rate``. A file libavformat cannot open
exits 1 with its reason on stderr, as ffprobe does. It runs as its own
process, like ffprobe, so a caller's timeout still bounds a pathological
file and a crash in the decoder libraries cannot take the service down.
:mod:`handlers.media.tools` resolves ``ffprobe`` to it when no real ffprobe
is configured.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

TIME_BASE = 1_000_000
"""libavformat's AV_TIME_BASE: container durations are in microseconds."""


def describe(path: Path) -> dict[str, Any]:
    """``{"streams": [...], "format": {...}}`` as ``ffprobe -show_format -show_streams`` prints it.

    Raises ``av.FFmpegError`` (or ``OSError``) when the file cannot be opened.
    """
    import av

    with av.open(str(path), metadata_errors="ignore") as container:
        streams = [_stream(stream) for stream in container.streams]
        fmt: dict[str, Any] = {
            "filename": str(path),
            "nb_streams": len(streams),
            "format_name": container.format.name,
            "format_long_name": container.format.long_name,
            "size": str(Path(path).stat().st_size),
        }
        if container.duration is not None and container.duration > 0:
            fmt["duration"] = _seconds(Fraction(container.duration, TIME_BASE))
        if container.bit_rate:
            fmt["bit_rate"] = str(container.bit_rate)
    return {"streams": streams, "format": fmt}


def _stream(stream: Any) -> dict[str, Any]:
    context = stream.codec_context
    found: dict[str, Any] = {"index": stream.index, "codec_type": stream.type}
    if context is not None:
        found["codec_name"] = context.codec.canonical_name  # "mp3", as ffprobe says, not the decoder "mp3float"
    if stream.type == "video" and context is not None:
        found.update(width=context.width, height=context.height)
        if context.format is not None:
            found["pix_fmt"] = context.format.name
    if stream.type == "audio" and context is not None:
        found.update(sample_rate=str(context.sample_rate), channels=context.channels)
        if context.layout is not None and not context.layout.name.endswith(" channels"):
            found["channel_layout"] = context.layout.name  # ffprobe omits a layout that is only a count
    found["avg_frame_rate"] = _ratio(_optional(stream, "average_rate"))
    found["r_frame_rate"] = _ratio(_optional(stream, "base_rate"))
    if stream.time_base is not None:
        found["time_base"] = _ratio(stream.time_base)
        if stream.duration is not None and stream.duration > 0:
            found["duration"] = _seconds(stream.duration * stream.time_base)
    if context is not None and context.bit_rate:
        found["bit_rate"] = str(context.bit_rate)
    if stream.frames:
        found["nb_frames"] = str(stream.frames)
    found["disposition"] = _disposition(stream)
    return found


def _optional(stream: Any, attribute: str) -> Any:
    """A stream attribute only some kinds of stream have (audio streams have no frame rate)."""
    try:
        return getattr(stream, attribute)
    except AttributeError:
        return None


def _disposition(stream: Any) -> dict[str, int]:
    import av.stream

    flags = av.stream.Disposition
    value = stream.disposition
    return {name: int(bool(value & member)) for name, member in flags.__members__.items()}


def _seconds(value: Fraction) -> str:
    return f"{float(value):.6f}"


def _ratio(value: Fraction | None) -> str:
    if value is None:
        return "0/0"
    return f"{value.numerator}/{value.denominator}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="vidpipe-ffprobe",
        description="ffprobe -print_format json -show_format -show_streams, read with PyAV.",
    )
    parser.add_argument("-v", dest="loglevel", default="error", help="accepted for ffprobe compatibility")
    parser.add_argument("-print_format", "-of", dest="print_format", default="json", choices=["json"])
    parser.add_argument("-show_format", action="store_true")
    parser.add_argument("-show_streams", action="store_true")
    parser.add_argument("-version", action="store_true", help="print the libraries' versions")
    parser.add_argument("file", nargs="?", type=Path)
    return parser.parse_args(argv)


def version() -> str:
    import av

    libavformat = ".".join(str(n) for n in av.library_versions["libavformat"])
    return f"vidpipe-ffprobe (PyAV {av.__version__}, libavformat {libavformat})"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.version:
        print(version())
        return 0
    if args.file is None:
        print("vidpipe-ffprobe: no input file given", file=sys.stderr)
        return 2
    try:
        data = describe(args.file)
    except Exception as error:  # noqa: BLE001 - ffprobe's contract: any unreadable input is exit 1 + a reason
        print(f"{args.file}: {error}", file=sys.stderr)
        return 1
    shown: dict[str, Any] = {}
    if args.show_streams or not args.show_format:
        shown["streams"] = data["streams"]
    if args.show_format or not args.show_streams:
        shown["format"] = data["format"]
    print(json.dumps(shown, indent=4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
