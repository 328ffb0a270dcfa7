"""The progress page at ``/`` in a real browser, against the real pipeline.

Headless Chromium (Debian's, via Playwright) signs in with the pre-filled
development token, uploads through the page, follows the steps live, opens
the transcript, cancels a longer lecture mid-way, and sees a step retry and
fail with its reason. Screenshots of each state land in
``tests/artifacts/web/<test>/``.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from api.settings import Settings
from api.token import mint
from api.web import render_index
from tests.mediafiles import JFK_FLAC, LECTURE_SENTENCES, jfk_video, lecture_video, media_directory
from tests.support import ServedApp
from tests.web.conftest import UNLABELLED_CONTROLS, WebStack, sign_in, upload_by_keyboard

STEPS = ["compress", "audio-convert", "transcribe", "embed"]
SENTENCE = "ask not what your country can do for you"
CUE_TIME = re.compile(r"^\d\d:\d\d\.\d{3} – \d\d:\d\d\.\d{3}$")

RECORD_STEP_CHANGES = """
() => {
  window.stepLog = [];
  new MutationObserver((changes) => {
    for (const change of changes) {
      const node = change.target;
      if (node.matches('li.step') && change.oldValue !== node.dataset.status) {
        window.stepLog.push(node.dataset.step + ':' + node.dataset.status);
      }
    }
  }).observe(document.getElementById('steps'), {subtree: true, attributes: true, attributeOldValue: true,
    attributeFilter: ['data-status']});
}
"""



def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


@pytest.fixture(scope="module")
def main_app(web_stack: WebStack) -> ServedApp:
    return web_stack.app("main")


def step(page: Page, name: str) -> Any:
    return page.locator(f'#steps li.step[data-step="{name}"]')


@pytest.mark.skipif(not JFK_FLAC.exists(), reason="needs ../shared/media/jfk.flac (the shared recordings)")
def test_shared_jfk_clip_uploaded_in_the_browser_completes_and_shows_its_transcript(
    main_app: ServedApp, page: Page, screenshot: Callable[[Page, str], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    video = jfk_video(media_directory(tmp_path_factory))
    assert video is not None
    sign_in(page, main_app)
    screenshot(page, "01-signed-in")

    assert page.evaluate(UNLABELLED_CONTROLS) == []
    page.evaluate(RECORD_STEP_CHANGES)
    upload_by_keyboard(page, video)
    expect(step(page, "compress")).to_be_visible()
    screenshot(page, "02-processing")

    expect(page.locator("#current-status")).to_have_text("completed", timeout=120_000)
    screenshot(page, "03-completed")
    for name in STEPS:
        expect(step(page, name)).to_have_attribute("data-status", "completed")
        expect(step(page, name).locator("progress")).to_have_js_property("value", 100)
    expect(page.locator("#overall-progress")).to_have_js_property("value", 100)
    # the steps advanced as the stream reported them: compress and audio-convert side by side (either may
    # finish first), transcribe after audio-convert, embed after transcribe
    def in_graph_order(names: list[str]) -> bool:
        return sorted(names) == sorted(STEPS) and (
            names.index("audio-convert") < names.index("transcribe") < names.index("embed")
        )

    log = page.evaluate("window.stepLog")
    completed = [entry.split(":")[0] for entry in log if entry.endswith(":completed")]
    assert in_graph_order(completed), log
    assert any(entry.endswith(":running") for entry in log), log
    done = page.locator('#activity li[data-event="StepCompleted"]').all_text_contents()
    assert in_graph_order([next(n for n in STEPS if f"· {n} ·" in line) for line in done]), done
    assert page.evaluate(UNLABELLED_CONTROLS) == []  # the steps' progress bars have names too

    page.get_by_role("button", name="Open transcript").click()
    cues = page.locator("#cues li")
    expect(cues.first).to_be_visible()
    assert SENTENCE in _words(" ".join(cues.locator(".cue-text").all_inner_texts()))
    for time_text in cues.locator("time").all_inner_texts():
        assert CUE_TIME.match(time_text), time_text
    expect(page.locator("#transcript")).to_be_focused()
    screenshot(page, "04-transcript")

    with page.expect_download() as download:
        page.get_by_role("button", name="Download VTT").click()
    assert Path(download.value.path()).read_text().startswith("WEBVTT")

    queues = page.locator("#queue-list li")
    expect(queues).to_have_count(1)
    expect(queues.first.locator(".q-status")).to_have_text("completed")

    page.set_viewport_size({"width": 360, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "05-phone-360px")


def test_cancel_midway_in_the_browser(
    main_app: ServedApp, page: Page, screenshot: Callable[[Page, str], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    video = lecture_video(media_directory(tmp_path_factory), 20, speech_text=LECTURE_SENTENCES)
    sign_in(page, main_app)
    upload_by_keyboard(page, video)
    expect(step(page, "compress")).to_have_attribute("data-status", "running")
    screenshot(page, "01-running")

    page.get_by_role("button", name="Cancel processing").click()
    expect(page.locator("#current-status")).to_have_text("cancelled")
    expect(page.locator("#status-message")).to_have_text("Processing was cancelled.")
    expect(page.get_by_role("button", name="Cancel processing")).to_be_disabled()
    expect(page.get_by_role("button", name="Open transcript")).to_be_disabled()
    expect(page.get_by_role("button", name="Watch", exact=True)).to_be_disabled()  # nothing to play
    assert page.locator('#steps li.step[data-status="completed"]').count() < len(STEPS)
    expect(page.locator("#queue-list li").first.locator(".q-status")).to_have_text("cancelled")
    screenshot(page, "02-cancelled")

    retry = page.get_by_role("button", name="Retry")  # runs again from the steps not completed
    expect(retry).to_be_visible()
    retry.click()
    expect(page.locator("#current-status")).not_to_have_text("cancelled")
    expect(retry).to_be_hidden()
    expect(page.locator('#activity li[data-event="Resumed"]')).to_have_count(1)
    expect(page.get_by_role("button", name="Cancel processing")).to_be_enabled()
    screenshot(page, "03-retried")
    page.get_by_role("button", name="Cancel processing").click()  # leaves the stack idle for the next test
    expect(page.locator("#current-status")).to_have_text("cancelled")


def test_retries_and_the_failure_reason_show_as_they_happen(
    web_stack: WebStack, page: Page, screenshot: Callable[[Page, str], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with socket.socket() as dead:  # bound, never listening: connections are refused
        dead.bind(("127.0.0.1", 0))
        app = web_stack.app(
            "whisper-down",
            WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL=f"http://127.0.0.1:{dead.getsockname()[1]}",
            VIDEO_STEP_RETRY_BASE_SECONDS=2,
            VIDEO_STEP_MAX_RETRIES=1,
        )
        video = lecture_video(media_directory(tmp_path_factory), 3, size="320x240", fps=10,
                              speech_text="Hello students.")
        sign_in(page, app)
        upload_by_keyboard(page, video)

        transcribe = step(page, "transcribe")
        expect(transcribe).to_have_attribute("data-status", "retrying")
        expect(transcribe.locator(".step-detail")).to_contain_text("1 retry")
        expect(transcribe.locator(".step-error")).to_contain_text("Retrying after:")
        screenshot(page, "01-retrying")

        expect(page.locator("#current-status")).to_have_text("failed")
        expect(transcribe).to_have_attribute("data-status", "failed")
        reason = page.locator("#queue-error")
        expect(reason).to_be_visible()
        expect(reason).to_contain_text("Failed:")
        assert str(dead.getsockname()[1]) in reason.inner_text() or "reach" in reason.inner_text()
        expect(page.locator("#status-message")).to_contain_text("Processing failed")
        events = " ".join(page.locator("#activity li").all_text_contents())
        assert "StepRetried" in events and "StepFailed" in events, events
        screenshot(page, "02-failed")


def test_page_and_static_files_are_served_with_a_dev_token_only_in_development(main_app: ServedApp) -> None:
    page = httpx.get(main_app.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'name="vidpipe-dev-token"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in (("app.css", "text/css"), ("app.js", "text/javascript")):
        response = httpx.get(f"{main_app.url}/static/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
    assert httpx.get(main_app.url + "/static/../settings.py").status_code == 404
    assert httpx.get(main_app.url + "/static/index.html").status_code == 404
    assert "/" not in httpx.get(main_app.url + "/openapi.json").json()["paths"]


def test_production_pages_carry_no_development_token() -> None:
    settings = Settings(
        VIDPIPE_ENV="production", NEXTAUTH_URL="https://vidpipe.example", VIDPIPE_JWT_SECRET="a-real-secret-" * 3,
        QSTASH_TOKEN="real-token", QSTASH_CURRENT_SIGNING_KEY="sig_current", QSTASH_NEXT_SIGNING_KEY="sig_next",
    )
    page = render_index(settings)
    assert "vidpipe-dev-token" not in page and "<!--" not in page
    assert 'name="vidpipe-dev-token"' in render_index(Settings(VIDPIPE_ENV="development"))


def test_sign_in_refuses_a_student_and_a_garbled_token(main_app: ServedApp, page: Page) -> None:
    page.goto(main_app.url + "/")
    token = page.get_by_label("Access token")
    token.fill("not-a-token")
    token.press("Tab")
    page.keyboard.press("Enter")  # the Sign in button, reached by keyboard
    expect(page.locator("#signin-message")).to_contain_text("not a JWT")
    token.fill(mint(Settings(), "student-1", "student"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-message")).to_contain_text("Sign-in refused: this API is for the tutor role")
    expect(page.locator("#upload")).to_be_hidden()
    token.fill(mint(Settings(), "tutor-2", "tutor", ttl_seconds=-60))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-message")).to_contain_text("expired")
