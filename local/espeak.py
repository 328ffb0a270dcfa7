"""``vidpipe-espeak-ng``: espeak-ng's command line over the library the ``espeakng-loader`` wheel ships.

The demo lecture (``make demo``), the benchmarks and the tests make speech
with ``espeak-ng -w out.wav [-m] [-v VOICE] [-s WPM] TEXT``. The
``espeakng-loader`` wheel carries libespeak-ng and its voice data but no
program, so this module is that program for the options vidpipe uses: it
loads the library with ctypes, synthesises synchronously and writes the
samples as a 16-bit mono WAV, as the real command does (same library, same
flags: ``espeakPHONEMES | espeakENDPAUSE``, ``espeakSSML`` with ``-m``).
:mod:`handlers.media.tools` prefers it to an ``espeak-ng`` on ``PATH``
because it installs with ``make install`` everywhere the wheel exists.

Exit status 0 when the WAV was written, 1 when the library failed (its
message on stderr), 2 for bad arguments or a missing library.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import wave
from collections.abc import Sequence
from pathlib import Path

AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_RATE = 1
ESPEAK_VOLUME = 2
ESPEAK_PITCH = 3
ESPEAK_WORDGAP = 7
CHARS_UTF8 = 0x1
SSML = 0x10
PHONEMES = 0x100
END_PAUSE = 0x1000
EE_OK = 0

_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class SpeechError(Exception):
    """libespeak-ng could not be loaded or refused the request; the message says which and why."""


def library() -> tuple[str, str]:
    """Paths of the packaged libespeak-ng and of the folder holding its ``espeak-ng-data``."""
    try:
        import espeakng_loader
    except ImportError:
        raise SpeechError(
            "the espeakng-loader package is not installed: run make install, or install espeak-ng "
            "and set VIDPIPE_ESPEAK to it"
        ) from None
    lib_path = espeakng_loader.get_library_path()
    data = Path(espeakng_loader.get_data_path())
    if not Path(lib_path).is_file():
        raise SpeechError(f"espeakng-loader has no library for this platform ({lib_path} is missing)")
    return lib_path, str(data.parent)


def synthesise(text: str, *, voice: str = "en", words_per_minute: int | None = None, ssml: bool = False,
               pitch: int | None = None, amplitude: int | None = None, word_gap: int | None = None) -> tuple[bytes, int]:
    """``text`` spoken by libespeak-ng: 16-bit little-endian mono samples and their rate."""
    lib_path, data_home = library()
    lib = ctypes.CDLL(lib_path)
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_home.encode(), 0)
    if rate <= 0:
        raise SpeechError(f"libespeak-ng did not start (data in {data_home})")
    chunks: list[bytes] = []

    def collect(samples: ctypes._Pointer, count: int, _events: int) -> int:  # type: ignore[type-arg]
        if samples and count > 0:
            chunks.append(ctypes.string_at(samples, count * 2))
        return 0

    callback = _Callback(collect)
    lib.espeak_SetSynthCallback(callback)
    try:
        if lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
            raise SpeechError(f"espeak-ng has no voice {voice!r}")
        for parameter, value in ((ESPEAK_RATE, words_per_minute), (ESPEAK_PITCH, pitch),
                                 (ESPEAK_VOLUME, amplitude), (ESPEAK_WORDGAP, word_gap)):
            if value is not None:
                lib.espeak_SetParameter(parameter, value, 0)
        encoded = text.encode()
        flags = CHARS_UTF8 | PHONEMES | END_PAUSE | (SSML if ssml else 0)
        status = lib.espeak_Synth(encoded, len(encoded) + 1, 0, 0, 0, flags, None, None)
        if status != EE_OK:
            raise SpeechError(f"libespeak-ng refused the text (error {status})")
        lib.espeak_Synchronize()
    finally:
        lib.espeak_Terminate()
    return b"".join(chunks), rate


def write_wav(target: Path, samples: bytes, rate: int) -> None:
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="vidpipe-espeak-ng", description="Speak text into a WAV file with the packaged libespeak-ng."
    )
    parser.add_argument("-w", dest="wav", type=Path, help="write the speech to this WAV file")
    parser.add_argument("-v", dest="voice", default="en", help="voice (default en)")
    parser.add_argument("-s", dest="speed", type=int, help="words per minute (espeak-ng's default 175)")
    parser.add_argument("-p", dest="pitch", type=int, help="pitch 0-99")
    parser.add_argument("-a", dest="amplitude", type=int, help="amplitude 0-200")
    parser.add_argument("-g", dest="gap", type=int, help="pause between words, in 10 ms units")
    parser.add_argument("-m", dest="ssml", action="store_true", help="the text is SSML markup")
    parser.add_argument("--version", action="store_true", help="print the library's version")
    parser.add_argument("text", nargs="*", help="the text (read from stdin when absent)")
    return parser.parse_args(argv)


def version() -> str:
    lib_path, data_home = library()
    lib = ctypes.CDLL(lib_path)
    lib.espeak_Info.restype = ctypes.c_char_p
    number = lib.espeak_Info(None).decode()
    return f"eSpeak NG text-to-speech: {number}  Data at: {data_home}/espeak-ng-data (vidpipe-espeak-ng)"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.version:
            print(version())
            return 0
        if args.wav is None:
            print("vidpipe-espeak-ng: only -w FILE output is supported (no sound device)", file=sys.stderr)
            return 2
        text = " ".join(args.text) if args.text else sys.stdin.read()
        samples, rate = synthesise(text, voice=args.voice, words_per_minute=args.speed, ssml=args.ssml,
                                   pitch=args.pitch, amplitude=args.amplitude, word_gap=args.gap)
    except SpeechError as error:
        print(f"vidpipe-espeak-ng: {error}", file=sys.stderr)
        return 1 if "refused" in str(error) or "did not start" in str(error) else 2
    write_wav(args.wav, samples, rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
