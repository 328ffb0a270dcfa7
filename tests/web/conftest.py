"""The real stack on loopback and a headless Chromium driven by Playwright.

``web_stack`` serves, in this process: the reference Whisper and embedding
servers (loaded once per module), the local QStash server, and vidpipe apps
with the real step providers on SQLite, so the page in the browser drives the
same pipeline as ``make run``. ``browser`` is Debian's Chromium
(``/usr/bin/chromium``; no Playwright browser download); screenshots go to
``tests/artifacts/web/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from api.settings import Settings
from tests.local.qstash_support import local_qstash
from tests.support import ServedApp, reserve_port

CHROMIUM = Path(os.environ.get("VIDPIPE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "web"
UNLABELLED_CONTROLS = """
() => Array.from(document.querySelectorAll('input, textarea, select, progress, video'))
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !el.getAttribute('aria-labelledby'))
  .map((el) => el.outerHTML)
"""
"""Page script: the form controls (and players) a screen reader could not name."""
VIDEO = "document.getElementById('video')"
"""Page script: the watch page's player (a <video>, also for audio recordings)."""
CAPTIONS_SHOWING = f"""() => {{
  const tracks = Array.from({VIDEO}.textTracks).filter((t) => t.kind === 'captions');
  return tracks.length === 1 && tracks[0].mode === 'showing' && tracks[0].cues !== null && tracks[0].cues.length > 0;
}}"""
"""Page script: the player has one captions track, showing, with cues loaded."""
ACTIVE_CUES = f"""() => {{
  const track = Array.from({VIDEO}.textTracks).find((t) => t.kind === 'captions');
  return track && track.activeCues && track.activeCues.length ? Array.from(track.activeCues, (c) => c.text) : null;
}}"""
"""Page script: the captions on screen now (null when none)."""




@dataclass
class WebStack:
    """Starts vidpipe apps (real providers, SQLite) sharing the module's model servers."""

    directory: Path
    models: dict[str, str]
    running: list[Any] = field(default_factory=list)

    def database_url(self, name: str) -> str:
        return f"sqlite:///{self.directory}/{name}.db"

    def storage_dir(self, name: str) -> Path:
        return self.directory / f"{name}-storage"

    def app(self, name: str, providers: Mapping[str, Any] | None = None, **overrides: Any) -> ServedApp:
        """A served app with its own database, storage and QStash server; overrides by env name.

        ``providers`` replaces the step providers (all four steps), as ``create_app`` takes them.
        """
        qstash = local_qstash(self.directory / f"{name}-qstash.sqlite3")
        self.running.append(qstash)
        sock = reserve_port()
        values: dict[str, Any] = {
            "VIDPIPE_ENV": "development",
            "DATABASE_URL": self.database_url(name),
            "PORT": sock.getsockname()[1],
            "QSTASH_URL": qstash.url,
            "VIDPIPE_STEP_PROVIDERS": "pipeline",
            "VIDPIPE_STORAGE_DIR": str(self.storage_dir(name)),
            "VIDPIPE_WORK_DIR": str(self.directory / f"{name}-work"),
            "WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL": self.models["whisper"],
            "BGE_HG_EMBEDDING_SERVER_API_URL": self.models["embeddings"],
            "VIDPIPE_PROJECTION_POLL_SECONDS": 0.02,
            "VIDPIPE_STREAM_POLL_SECONDS": 0.05,
            "VIDPIPE_CANCEL_POLL_SECONDS": 0.2,
        }
        values.update(overrides)
        served = ServedApp(create_app(Settings(**values), providers=providers), sock)
        self.running.append(served)
        return served

    def stop(self) -> None:
        for server in reversed(self.running):
            server.stop()


def sign_in(page: Any, app: ServedApp) -> None:
    """Open the page and sign in with the development token the server filled in."""
    from playwright.sync_api import expect

    page.goto(app.url + "/")
    token = page.get_by_label("Access token")
    expect(token).not_to_have_value("")  # the development token, filled in by the server
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text("Signed in as dev-tutor")
    expect(page.get_by_role("heading", name="Upload a lecture video")).to_be_visible()


def upload_by_keyboard(page: Any, video: Path) -> None:
    """Choose the file, then reach the upload button with Tab and press Enter."""
    from playwright.sync_api import expect

    page.get_by_label("Video file").set_input_files(str(video))
    page.get_by_label("Video file").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "upload-button"
    page.keyboard.press("Enter")
    expect(page.locator("#upload-message")).to_contain_text("processing has started")
    expect(page.locator("#upload-progress")).to_have_js_property("value", 100)


@pytest.fixture(scope="module")
def web_stack(tmp_path_factory: pytest.TempPathFactory, model_servers: dict[str, str]) -> Iterator[WebStack]:
    stack = WebStack(tmp_path_factory.mktemp("web"), model_servers)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium (CI installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


def artifacts_for(node: pytest.Item) -> Path:
    folder = ARTIFACTS / node.name.replace("[", "-").replace("]", "")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context and page; a failing test leaves ``failure.png`` behind."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    if request.node.stash.get(FAILED, False):
        page.screenshot(path=str(artifacts_for(request.node) / "failure.png"), full_page=True)
    context.close()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Any, str], Path]:
    """``screenshot(page, "02-uploaded")`` saves tests/artifacts/web/<test>/<name>.png."""
    folder = artifacts_for(request.node)

    def take(page: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
