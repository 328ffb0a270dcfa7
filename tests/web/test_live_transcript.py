"""The transcript grows on the page while the transcribe step runs, in a real browser.

The real transcribe step streams from a fake Whisper server held mid-lecture
(:mod:`tests.api.live_transcript_support`); compress and embed are simulated.
The panel shows the segments heard so far before the queue completes, grows,
and becomes the final transcript (with its downloads) when the step completes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from handlers.providers.simulated import SimulatedProvider
from tests.api.conftest import fake_video
from tests.api.live_transcript_support import PIECES, held_transcription
from tests.web.conftest import WebStack, sign_in

TEXTS = [text for number in (1, 2) for _, _, text in PIECES[number]]

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[WebStack]:
    """No model servers: every step's provider is given."""
    stack = WebStack(tmp_path, {"whisper": "http://127.0.0.1:9", "embeddings": "http://127.0.0.1:9"})
    yield stack
    stack.stop()


def test_the_transcript_panel_grows_before_the_queue_completes(
    stack: WebStack, page: Page, screenshot: Callable[[Page, str], Path], tmp_path: Path
) -> None:
    with held_transcription(stack.storage_dir("live"), tmp_path / "whisper-work") as (script, providers):
        app = stack.app("live", providers={**providers, "compress": SimulatedProvider(),
                                           "embed": SimulatedProvider()})
        sign_in(page, app)
        page.get_by_label("Video files").set_input_files(
            [{"name": "photosynthesis.mp4", "mimeType": "video/mp4", "buffer": fake_video(60_000)}])
        page.get_by_role("button", name="Upload and process").click()
        panel, cues = page.locator("#transcript"), page.locator("#cues li")

        assert script.before_first.reached.wait(30)
        expect(panel).to_be_visible()  # opened by itself while the step runs
        expect(page.locator("#transcript-meta")).to_contain_text("Transcribing")
        expect(panel.locator(".downloads")).to_be_hidden()  # offered once complete
        expect(cues).to_have_count(0)

        script.before_first.opened.set()
        assert script.mid_lecture.reached.wait(30)
        expect(cues).to_have_count(4)  # piece 1 and the first segment of piece 2
        expect(cues.locator(".cue-text")).to_have_text(TEXTS[:4])
        expect(cues.nth(3).locator("time")).to_have_text("00:10.000 – 00:14.000")
        expect(page.locator("#transcript-meta")).to_contain_text("4 segments so far")
        expect(page.locator("#current-status")).to_have_text("processing")
        expect(page.get_by_role("button", name="Open transcript")).to_be_disabled()
        screenshot(page, "01-growing")

        script.mid_lecture.opened.set()
        expect(page.locator("#current-status")).to_have_text("completed", timeout=30_000)
        expect(cues.locator(".cue-text")).to_have_text(TEXTS)
        expect(page.locator("#transcript-meta")).to_contain_text("5 cues")
        expect(panel.locator(".downloads")).to_be_visible()
        expect(panel).not_to_have_attribute("aria-busy", "true")
        screenshot(page, "02-complete")
