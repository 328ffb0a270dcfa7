"""The page in a real browser: several files sent as one batch, then the lecture deleted with its button.

Steps are simulated (what is tested is the page and the API behind it, not the media work).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from api.token import mint
from handlers.providers.simulated import SimulatedProvider
from tests.api.conftest import fake_video
from tests.web.conftest import WebStack, sign_in

STEPS = ("compress", "audio-convert", "transcribe", "embed")


def test_several_files_upload_as_a_batch_and_the_delete_button_removes_the_lecture(
    web_stack: WebStack, page: Page, screenshot: Callable[[Page, str], Path],
) -> None:
    providers = {step: SimulatedProvider(seconds=0.2) for step in STEPS}
    app = web_stack.app("batch", providers=providers, VIDPIPE_STEP_PROVIDERS="simulated")
    sign_in(page, app)
    page.get_by_label("Video files").set_input_files([
        {"name": "week-1.mp4", "mimeType": "video/mp4", "buffer": fake_video(60_000, seed=1)},
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a video"},
        {"name": "week-2.mp4", "mimeType": "video/mp4", "buffer": fake_video(60_000, seed=2)},
    ])
    page.get_by_role("button", name="Upload and process").click()
    expect(page.locator("#upload-message")).to_contain_text("2 of 3 videos are being processed")
    expect(page.locator("#upload-message")).to_contain_text("notes.txt")
    expect(page.locator("#current-file")).to_have_text("week-1.mp4")
    expect(page.locator("#current-status")).to_have_text("completed", timeout=30_000)
    screenshot(page, "01-batch-uploaded")
    queue_id = page.locator("#current-id").inner_text()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete lecture").click()
    expect(page.locator("#upload-message")).to_have_text("Deleted week-1.mp4.")
    expect(page.locator("#current")).to_be_hidden()
    screenshot(page, "02-deleted")

    settings = app.server.config.app.state.settings  # type: ignore[attr-defined]
    token = mint(settings, "dev-tutor", "tutor")
    answer = httpx.get(f"{app.url}/api/video-processing/status/{queue_id}", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 404
