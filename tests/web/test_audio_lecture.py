"""An audio-only lecture in a real browser, on the real pipeline.

A tutor uploads a voice recording (``jfk.flac`` as an MP3) through the page;
the queue runs the real audio-convert, transcribe (reference Whisper server)
and embed steps with no compress step, and the player plays the original
recording in the page's ``<video>`` element with captions showing, while the
transcript panel follows playback and seeks on click. Headless Chromium
(Debian's, via Playwright); screenshots in ``tests/artifacts/web/<test>/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.mediafiles import JFK_FLAC, jfk_audio, media_directory
from tests.support import ServedApp
from tests.web.conftest import (
    ACTIVE_CUES,
    CAPTIONS_SHOWING,
    UNLABELLED_CONTROLS,
    VIDEO,
    WebStack,
    sign_in,
    upload_by_keyboard,
)

PLAYING = f"() => {{ const v = {VIDEO}; return !v.paused && v.readyState >= 3 && v.currentTime > 0; }}"
CUE_AT = f"""(t) => {{
  const track = Array.from({VIDEO}.textTracks).find((t) => t.kind === 'captions');
  const cue = Array.from(track.cues).find((c) => c.startTime <= t && t < c.endTime);
  return cue ? cue.text : null;
}}"""


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


@pytest.fixture(scope="module")
def audio_app(web_stack: WebStack) -> ServedApp:
    return web_stack.app("audio")


@pytest.mark.skipif(not JFK_FLAC.exists(), reason="needs ../shared/media/jfk.flac (the shared recordings)")
def test_an_audio_lecture_is_transcribed_and_plays_with_captions_and_its_transcript(
    audio_app: ServedApp, page: Page, screenshot: Callable[[Page, str], Path],
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
) -> None:
    made = jfk_audio(media_directory(tmp_path_factory), ".mp3")
    assert made is not None
    recording = tmp_path / "voice memo.mp3"
    recording.write_bytes(made.read_bytes())
    sign_in(page, audio_app)
    upload_by_keyboard(page, recording)
    expect(page.locator("#current-status")).to_have_text("completed", timeout=120_000)
    expect(page.locator("#current-file")).to_have_text("voice memo.mp3 · audio recording")
    expect(page.locator("#steps li.step")).to_have_count(3)  # nothing to compress
    expect(page.locator('#steps li.step[data-step="compress"]')).to_have_count(0)
    for name in ("audio-convert", "transcribe", "embed"):
        expect(page.locator(f'#steps li.step[data-step="{name}"]')).to_have_attribute("data-status", "completed")
    expect(page.locator("#overall-progress")).to_have_js_property("value", 100)
    screenshot(page, "01-completed")

    watch = page.get_by_role("button", name="Watch", exact=True)
    expect(watch).to_be_enabled()  # the original recording plays: there is no compressed video to wait for
    watch.click()
    expect(page.locator("#player-file")).to_have_text("voice memo.mp3 · audio recording")
    expect(page.locator("#player-message")).to_have_text("voice memo.mp3 is ready to play from 0:00.")
    assert page.evaluate(f"{VIDEO}.dataset.media") == "audio"
    assert page.evaluate(f"{VIDEO}.videoWidth") == 0 and page.evaluate(f"{VIDEO}.duration") > 10  # sound only
    page.wait_for_function(CAPTIONS_SHOWING)
    assert page.evaluate(UNLABELLED_CONTROLS) == []
    lines = page.locator("#lines li")
    expect(lines.first).to_be_visible()
    spoken = _words(" ".join(lines.locator(".line-text").all_inner_texts()))
    assert "ask not what your country can do for you" in spoken, spoken

    # a line clicked plays the recording from there; the caption and the panel follow playback
    last = lines.count() - 1
    lines.nth(last).click()
    page.wait_for_function(PLAYING)
    page.wait_for_function(ACTIVE_CUES)
    now = page.evaluate(f"{VIDEO}.currentTime")
    assert page.evaluate(ACTIVE_CUES) == [page.evaluate(CUE_AT, now)], now
    expect(page.locator("#lines li.is-now")).to_have_attribute("data-index", str(last))
    expect(page.locator("#lines li.is-now .line-seek")).to_have_attribute("aria-current", "true")
    screenshot(page, "02-playing")
    page.wait_for_function(f"() => {VIDEO}.ended", timeout=30_000)  # it plays through to the end
    if last:
        lines.nth(0).click()  # back to the start: the panel follows the seek
        page.wait_for_function(PLAYING)
        expect(page.locator("#lines li.is-now")).to_have_attribute("data-index", "0")
