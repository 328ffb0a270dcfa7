"""Short lectures in five languages, spoken by espeak-ng: the test and benchmark material for transcription
in languages other than English (``tests/local/test_whisper_languages.py``, ``bench/languages.py``).

Each is about 15-20 s of speech on one topic (photosynthesis), so detection,
word error rate and real-time factor compare languages on the same content.
:func:`speak` writes the WAV; :func:`lecture_video` puts it over a test pattern
as an MP4, as a tutor's upload would be.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from local.demo import speech_over_test_pattern
from local.espeak import synthesise, write_wav


@dataclass(frozen=True)
class Lecture:
    language: str
    """ISO 639-1 code: what detection should answer."""
    voice: str
    """espeak-ng's voice."""
    text: str


LECTURES: dict[str, Lecture] = {
    lecture.language: lecture
    for lecture in (
        Lecture("en", "en", "Good morning everyone. Today we are going to study photosynthesis. Plants use the "
                "light of the sun to make sugar from water and carbon dioxide. They take water from the soil and "
                "carbon dioxide from the air. Then they give oxygen back to the atmosphere."),
        Lecture("es", "es", "Buenos días a todos. Hoy vamos a estudiar la fotosíntesis. Las plantas usan la luz del "
                "sol para producir azúcar a partir del agua y del dióxido de carbono. Toman el agua del suelo y el "
                "dióxido de carbono del aire. Después devuelven oxígeno a la atmósfera."),
        Lecture("fr", "fr", "Bonjour à tous. Aujourd'hui, nous allons étudier la photosynthèse. Les plantes "
                "utilisent la lumière du soleil pour fabriquer du sucre avec de l'eau et du gaz carbonique. Elles "
                "prennent l'eau dans le sol et le gaz carbonique dans l'air. Ensuite, elles rejettent de "
                "l'oxygène dans l'atmosphère."),
        Lecture("de", "de", "Guten Morgen zusammen. Heute lernen wir die Photosynthese. Pflanzen nutzen das Licht "
                "der Sonne, um aus Wasser und Kohlendioxid Zucker herzustellen. Sie nehmen das Wasser aus dem Boden "
                "und das Kohlendioxid aus der Luft. Dann geben sie Sauerstoff an die Atmosphäre ab."),
        Lecture("pt", "pt", "Bom dia a todos. Hoje vamos estudar a fotossíntese. As plantas usam a luz do sol para "
                "produzir açúcar a partir da água e do gás carbônico. Elas retiram a água do solo e o gás carbônico "
                "do ar. Depois, elas devolvem oxigênio para a atmosfera."),
    )
}

WORDS_PER_MINUTE = 150


def speak(lecture: Lecture, target: Path) -> Path:
    """The lecture spoken by espeak-ng, as a 16-bit mono WAV at ``target``."""
    samples, rate = synthesise(lecture.text, voice=lecture.voice, words_per_minute=WORDS_PER_MINUTE)
    write_wav(target, samples, rate)
    return target


def lecture_video(lecture: Lecture, folder: Path) -> Path:
    """The spoken lecture over a test pattern, ``<folder>/lecture-<language>.mp4`` (made once)."""
    video = folder / f"lecture-{lecture.language}.mp4"
    if not video.is_file():
        wav = speak(lecture, folder / f"lecture-{lecture.language}.wav")
        speech_over_test_pattern(wav, video)
    return video
