"""The example app of ``web/`` (``@vidpipe/react``) in headless Chromium against the real stack.

The app is built with Vite (``npm run build:example``) and served to the browser
at ``/example/`` on the API's own origin (Playwright answers those paths from
the build; every ``/api`` request goes to the real app), so the hooks talk to
vidpipe exactly as a same-origin frontend would. The jfk clip is uploaded
through ``useStartVideoProcessing`` and every step reaches completed through
``useVideoProcessingStatus``'s event stream into ``VideoProcessingProgress``; a
second, longer upload is cancelled from its progress panel. Screenshots go to
``tests/artifacts/web/<test>/``.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from api.settings import Settings
from api.token import mint
from tests.mediafiles import JFK_FLAC, LECTURE_SENTENCES, jfk_video, lecture_video, media_directory
from tests.support import ServedApp
from tests.web.conftest import UNLABELLED_CONTROLS, WebStack
from tests.web.test_package import WEB, ensure_node_modules, npm

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Page, Route, expect  # noqa: E402

STEP_LABELS = ["Compress video", "Extract audio", "Transcribe", "Embeddings"]


@pytest.fixture(scope="module")
def example_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example app built by Vite into a temporary folder."""
    ensure_node_modules()
    out = tmp_path_factory.mktemp("example-build")
    result = subprocess.run(
        [npm(), "run", "build:example"], cwd=WEB, env={**os.environ, "EXAMPLE_OUT_DIR": str(out)},
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    assert (out / "index.html").is_file()
    return out


@pytest.fixture(scope="module")
def example_app(web_stack: WebStack) -> ServedApp:
    return web_stack.app("example")


def open_example(page: Page, app: ServedApp, build: Path) -> list[str]:
    """Serve the build at ``/example/`` on the app's origin, sign in; returns the URLs of stream requests."""

    def answer(route: Route) -> None:
        path = urlparse(route.request.url).path.removeprefix("/example").lstrip("/") or "index.html"
        file = (build / path).resolve()
        if not file.is_file() or build.resolve() not in file.parents:
            file = build / "index.html"
        route.fulfill(path=str(file))

    page.route(re.compile(re.escape(app.url) + r"/example(/.*)?$"), answer)
    streams: list[str] = []
    page.on("request", lambda request: streams.append(request.url) if request.url.endswith("/stream") else None)
    page.goto(app.url + "/example/")
    token = mint(Settings(_env_file=None, VIDPIPE_ENV="development"), "dev-tutor", "tutor")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Upload a lecture video")).to_be_visible()
    return streams


def upload(page: Page, video: Path) -> Any:
    """Upload through the example's form; returns the video's progress panel."""
    page.get_by_label("Video file").set_input_files(str(video))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("progressbar", name="Upload progress")).to_have_js_property("value", 100)
    panel = page.get_by_role("region", name=f"Processing {video.name}")
    expect(panel).to_be_visible()
    return panel


@pytest.mark.skipif(not JFK_FLAC.exists(), reason="needs ../shared/media/jfk.flac (the shared recordings)")
def test_shared_jfk_clip_completes_through_the_hooks_and_a_second_upload_is_cancelled(
    example_app: ServedApp, example_build: Path, page: Page, screenshot: Callable[[Page, str], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    media = media_directory(tmp_path_factory)
    video = jfk_video(media)
    assert video is not None
    streams = open_example(page, example_app, example_build)
    screenshot(page, "01-signed-in")
    assert page.evaluate(UNLABELLED_CONTROLS) == []

    panel = upload(page, video)
    expect(panel.locator(".vidpipe-step")).to_have_count(len(STEP_LABELS))
    screenshot(page, "02-processing")
    expect(panel).to_have_attribute("data-status", "completed", timeout=120_000)
    for label in STEP_LABELS:
        expect(panel.get_by_role("progressbar", name=f"{label} progress")).to_have_js_property("value", 100)
    expect(panel.locator('.vidpipe-step[data-status="completed"]')).to_have_count(len(STEP_LABELS))
    expect(panel.get_by_role("progressbar", name="Overall progress")).to_have_js_property("value", 100)
    expect(panel.get_by_role("status")).to_contain_text("Processing completed")
    expect(panel.get_by_role("button", name="Cancel processing")).to_have_count(0)
    assert streams, "the status never followed the event stream"
    assert page.evaluate(UNLABELLED_CONTROLS) == []
    screenshot(page, "03-completed")

    longer = lecture_video(media, 20, speech_text=LECTURE_SENTENCES)
    second = upload(page, longer)
    # compress and audio-convert run side by side: wait for at least one running step
    expect(second.locator('.vidpipe-step[data-status="running"]').first).to_be_visible()
    screenshot(page, "04-second-running")
    cancel = second.get_by_role("button", name="Cancel processing")
    cancel.focus()
    page.keyboard.press("Enter")
    expect(second).to_have_attribute("data-status", "cancelled")
    expect(second.get_by_role("status")).to_contain_text("Processing cancelled")
    expect(second.get_by_role("button", name="Cancel processing")).to_have_count(0)
    assert second.locator('.vidpipe-step[data-status="completed"]').count() < len(STEP_LABELS)
    expect(page.locator("#queue-list li").first.locator(".q-status")).to_have_text("cancelled")
    screenshot(page, "05-cancelled")
