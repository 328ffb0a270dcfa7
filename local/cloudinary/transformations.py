"""The subset of Cloudinary's video transformation language this server performs.

A transformation is ``/``-chained components of ``,``-separated
``<key>_<value>`` parameters, e.g. ``ac_aac,c_limit,h_720,q_auto,vc_h264``;
an eager transformation may end in ``/<format>``. Supported:

===============  =========================================================
``c_limit``      with ``w_``/``h_``: shrink to fit, never enlarge
``c_scale``      with ``w_``/``h_``: scale to exactly that (aspect kept if one given)
``vc_``          ``h264``, ``auto`` (H.264 via libx264), ``none`` (drop video)
``ac_``          ``aac``, ``opus``, ``mp3``, ``vorbis``, ``none`` (drop audio)
``af_``          audio sampling frequency in Hz
``q_``           ``auto``, ``auto:best|good|eco|low`` or 1-100: a libx264 CRF
``br_``          bit rate (``64k``, ``2m``, ``500000``): audio bit rate of audio formats,
                 video bit rate cap of video formats
formats          video: ``mp4``; audio: ``mp3``, ``ogg``, ``m4a``, ``wav``
===============  =========================================================

Anything else is refused with ``Invalid transformation component`` (a real
account would accept it; this server says plainly it cannot do it).
Cloudinary has no channel-count parameter, so derived audio keeps the
source's channels, as on Cloudinary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

VIDEO_FORMATS = {"mp4"}
AUDIO_FORMATS = {"mp3", "ogg", "m4a", "wav"}
CONTENT_TYPES = {
    "mp4": "video/mp4",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "m4a": "audio/mp4",
    "wav": "audio/wav",
}
QUALITY_CRF = {"auto": 28, "auto:best": 23, "auto:good": 28, "auto:eco": 32, "auto:low": 35}
_AUDIO_ENCODERS = {"aac": "aac", "opus": "libopus", "mp3": "libmp3lame", "vorbis": "libvorbis"}
_DEFAULT_AUDIO_CODEC = {"mp4": "aac", "mp3": "mp3", "ogg": "vorbis", "m4a": "aac", "wav": "pcm"}
_BIT_RATE = re.compile(r"^(\d+)([km]?)$")


class TransformationError(Exception):
    """The transformation cannot be performed; the message is what Cloudinary would say."""


@dataclass(frozen=True)
class Derivation:
    """One derived file: the parsed transformation and the delivery format."""

    format: str
    crop: str | None = None
    width: int | None = None
    height: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    audio_frequency: int | None = None
    quality: str | None = None
    bit_rate: str | None = None

    @property
    def is_audio(self) -> bool:
        return self.format in AUDIO_FORMATS


def split_eager(eager: str) -> list[tuple[str, str | None]]:
    """``"t1/mp4|t2/ogg"`` → ``[("t1", "mp4"), ("t2", "ogg")]`` (format ``None`` when absent)."""
    items = []
    for entry in filter(None, eager.split("|")):
        transformation, _, last = entry.rpartition("/")
        if transformation and "_" not in last:
            items.append((transformation, last or None))
        else:
            items.append((entry, None))
    return items


def parse(transformation: str, format: str) -> Derivation:
    if format not in VIDEO_FORMATS | AUDIO_FORMATS:
        raise TransformationError(f"Invalid extension {format} (the local server delivers {_formats()})")
    derivation = Derivation(format=format)
    for component in filter(None, transformation.split("/")):
        for parameter in filter(None, component.split(",")):
            derivation = _apply(derivation, parameter)
    if derivation.crop and not (derivation.width or derivation.height):
        raise TransformationError(f"Invalid transformation component - c_{derivation.crop} needs w_ or h_")
    return derivation


def _apply(derivation: Derivation, parameter: str) -> Derivation:
    key, _, value = parameter.partition("_")
    invalid = TransformationError(f"Invalid transformation component - {parameter}")
    if not value:
        raise invalid
    if key == "c" and value in {"limit", "scale"}:
        return replace(derivation, crop=value)
    if key in {"w", "h"} and value.isdigit() and int(value) > 0:
        return replace(derivation, **{"width" if key == "w" else "height": int(value)})
    if key == "vc" and value in {"h264", "auto", "none"}:
        return replace(derivation, video_codec=value)
    if key == "ac" and value in {*_AUDIO_ENCODERS, "none"}:
        return replace(derivation, audio_codec=value)
    if key == "af" and value.isdigit() and 8000 <= int(value) <= 192000:
        return replace(derivation, audio_frequency=int(value))
    if key == "q" and (value in QUALITY_CRF or (value.isdigit() and 1 <= int(value) <= 100)):
        return replace(derivation, quality=value)
    if key == "br" and _BIT_RATE.match(value):
        return replace(derivation, bit_rate=value)
    raise invalid


def _formats() -> str:
    return ", ".join(sorted(VIDEO_FORMATS | AUDIO_FORMATS))


def crf(quality: str | None) -> int:
    if quality is None:
        return QUALITY_CRF["auto"]
    if quality in QUALITY_CRF:
        return QUALITY_CRF[quality]
    return max(18, min(40, round(51 - 0.3 * int(quality))))


def _scale_filter(derivation: Derivation) -> str | None:
    w, h = derivation.width, derivation.height
    if not derivation.crop or not (w or h):
        return None
    if derivation.crop == "limit":
        if w and h:
            return (
                f"scale=w='min(iw,{w})':h='min(ih,{h})':force_original_aspect_ratio=decrease"
                ":force_divisible_by=2"
            )
        return f"scale=-2:'min(ih,{h})'" if h else f"scale='min(iw,{w})':-2"
    if w and h:
        return f"scale={w}:{h}"
    return f"scale=-2:{h}" if h else f"scale={w}:-2"


def ffmpeg_args(derivation: Derivation, source: Path, target: Path, *, ffmpeg: str, preset: str) -> list[str]:
    """The ffmpeg command that writes ``derivation`` of ``source`` to ``target``."""
    args = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source)]
    if derivation.is_audio or derivation.video_codec == "none":
        args += ["-vn"]
    else:
        args += ["-map", "0:v:0"]
        scale = _scale_filter(derivation)
        args += ["-vf", f"{scale},format=yuv420p" if scale else "format=yuv420p"]
        args += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf(derivation.quality))]
        if derivation.bit_rate:
            args += ["-maxrate", derivation.bit_rate, "-bufsize", derivation.bit_rate]
        args += ["-movflags", "+faststart"]
    args += _audio_args(derivation)
    args += ["-f", {"m4a": "ipod", "mp4": "mp4"}.get(derivation.format, derivation.format), str(target)]
    return args


def _audio_args(derivation: Derivation) -> list[str]:
    codec = derivation.audio_codec or _DEFAULT_AUDIO_CODEC[derivation.format]
    if codec == "none":
        return ["-an"]
    args = ["-map", "0:a:0" if derivation.is_audio else "0:a:0?"]
    args += ["-c:a", "pcm_s16le" if codec == "pcm" else _AUDIO_ENCODERS[codec]]
    if derivation.audio_frequency:
        args += ["-ar", str(derivation.audio_frequency)]
    if derivation.is_audio and derivation.bit_rate:
        args += ["-b:a", derivation.bit_rate]
    return args
