"""Search every lecture and watch the moment found, in a real browser.

Lectures go through the served pipeline (local QStash, step webhooks,
projections) with the scripted compress and transcribe steps of
``tests/api/search_support.py`` and the real embed step on the reference
embedding server, so the search index holds real vectors. The scripted
compressor stores the upload itself as the "compressed" video, so the uploads
are real MP4s (a test pattern with espeak-ng reading the script, 62 s) that
Chromium decodes and plays from the signed media links.

What is checked, in headless Chromium (Debian's, via Playwright): a question
typed in the search box lists the right moment first, with the file name, the
time, the matched words marked and the retriever; clicking it plays that
lecture within ±2 s of the moment with captions showing; the transcript panel
follows playback, seeks on click and on Enter, and finds words; the queue list
names videos by file name; links are renewed before they expire without
stopping playback, and a link refused mid-way is renewed once and the moment
still plays; server text is never parsed as HTML; and all of it works at
360 px. Screenshots land in ``tests/artifacts/web/<test>/``.
"""

from __future__ import annotations

import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from api.settings import Settings
from api.token import mint
from handlers.providers.simulated import SimulatedProvider
from handlers.storage.local import LocalStorage
from tests.api.conftest import fake_video
from tests.api.search_support import LECTURES, ScriptedTranscriber, search_providers
from tests.mediafiles import lecture_video, media_directory
from tests.support import ServedApp, wait_until
from tests.web.conftest import (
    ACTIVE_CUES,
    CAPTIONS_SHOWING,
    UNLABELLED_CONTROLS,
    VIDEO,
    WebStack,
    sign_in,
    upload_by_keyboard,
)

QUESTION = "what does the plant do with its sugar at night?"
"""Answered at 0:46 of photosynthesis.mp4 ("At night the plant burns some of that sugar ...")."""

MARKUP = "markup.mp4"
MARKUP_LINE = '🌱 Never trust <img src=x onerror="document.title=1"> or <b>bold</b> claims about photosynthesis & sugar.'
"""Markup the page must show as text; the emoji (two UTF-16 units, one code point, as the API counts) comes
before the words it marks, so a page that mixed up the two counts would mark the wrong letters."""
SCRIPTS = {**LECTURES, MARKUP: [(0.0, 8.0, MARKUP_LINE)]}

PLAYING = f"() => {{ const v = {VIDEO}; return !v.paused && !v.ended && v.readyState >= 3 && v.currentTime > 0; }}"


LINE_IN_VIEW = """(index) => {
  const box = document.getElementById('lines').getBoundingClientRect();
  const line = document.querySelector(`#lines li[data-index="${index}"]`);
  if (!line || line.hidden) return false;
  const at = line.getBoundingClientRect();
  return at.top >= box.top - 1 && at.bottom <= box.bottom + 1;
}"""
"""Page script: whether transcript line ``index`` is shown whole inside the panel's view."""


def seek_to(page: Page, seconds: float) -> None:
    """Move playback to ``seconds`` and wait until the video has got there (its seek has completed)."""
    page.evaluate(f"{VIDEO}.currentTime = {seconds}")
    page.wait_for_function(f"() => !{VIDEO}.seeking && Math.abs({VIDEO}.currentTime - {seconds}) < 0.5")


def assert_played_from(page: Page, start: float, since: float) -> None:
    """Playback is at ``start`` seconds or as far past it as it can have got since ``since`` (``time.monotonic()``
    before the action that started it): a bound from the clock, not a guess of how slow a loaded machine is."""
    at = page.evaluate(f"{VIDEO}.currentTime")
    assert start - 0.5 <= at <= start + (time.monotonic() - since) + 0.5, (start, at)


def short_clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def spoken_at(filename: str, t: float) -> str:
    """The script's line being said at ``t`` seconds."""
    return next(text for start, end, text in LECTURES[filename] if start <= t < end)


def scripted_app(web_stack: WebStack, name: str, **overrides: Any) -> ServedApp:
    """A served app whose compress/transcribe steps are scripted and whose embed step is real."""
    storage = web_stack.storage_dir(name)
    providers = dict(search_providers(web_stack.database_url(name), storage, web_stack.models["embeddings"]))
    providers["transcribe"] = ScriptedTranscriber(LocalStorage(storage), SCRIPTS)
    providers["audio-convert"] = SimulatedProvider(name="scripted-audio")
    return web_stack.app(name, providers=providers, **overrides)


@pytest.fixture(scope="module")
def search_app(web_stack: WebStack) -> ServedApp:
    return scripted_app(web_stack, "search")


@pytest.fixture(scope="module")
def lecture_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real, playable MP4s named as the scripts: a test pattern, espeak-ng reading the script."""
    media = media_directory(tmp_path_factory)
    folder = tmp_path_factory.mktemp("lectures")
    files = {}
    for filename in ("photosynthesis.mp4", "french-revolution.mp4"):
        sentences = [text for _, _, text in LECTURES[filename]]
        made = lecture_video(media, 62, size="320x240", fps=10, speech_text=sentences, faststart=True)
        files[filename] = folder / filename
        shutil.copyfile(made, files[filename])
    return files


def dev_tutor(app: ServedApp) -> httpx.Client:
    """The development tutor (the page's pre-filled token) over HTTP."""
    token = mint(Settings(), "dev-tutor", "tutor")
    return httpx.Client(base_url=app.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture(scope="module")
def tutor(search_app: ServedApp) -> Iterator[httpx.Client]:
    with dev_tutor(search_app) as client:
        yield client


def api_search(tutor: httpx.Client, q: str, **params: Any) -> dict[str, Any]:
    response = tutor.get("/api/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_searchable(tutor: httpx.Client, queue_id: str, words: str) -> None:
    """Until the moments projection has indexed the lecture (a moment after its status says completed)."""
    wait_until(lambda: api_search(tutor, words, queue_id=queue_id, mode="keyword")["moments"], 30,
               f"queue {queue_id} to become searchable")


def processed(tutor: httpx.Client, filename: str, content: bytes) -> str:
    """Upload over HTTP (the same bytes again answer with the earlier queue) and wait until searchable."""
    response = tutor.post("/api/video-processing/upload", files={"file": (filename, content, "video/mp4")})
    assert response.status_code == 202, response.text
    queue_id = str(response.json()["queue_id"])
    wait_until(lambda: tutor.get(f"/api/video-processing/status/{queue_id}").json()["status"] == "completed", 120,
               f"{filename} to be processed")
    wait_searchable(tutor, queue_id, SCRIPTS[filename][0][2])
    return queue_id


def test_a_question_typed_in_the_search_box_plays_the_moment_with_captions(
    search_app: ServedApp, tutor: httpx.Client, lecture_files: dict[str, Path], page: Page,
    screenshot: Callable[[Page, str], Path],
) -> None:
    french = processed(tutor, "french-revolution.mp4", lecture_files["french-revolution.mp4"].read_bytes())
    sign_in(page, search_app)
    upload_by_keyboard(page, lecture_files["photosynthesis.mp4"])
    expect(page.locator("#current-status")).to_have_text("completed", timeout=120_000)
    expect(page.locator("#current-file")).to_have_text("photosynthesis.mp4")
    expect(page.get_by_role("button", name="Watch", exact=True)).to_be_enabled()
    queue_id = page.locator("#current-id").inner_text()
    wait_searchable(tutor, queue_id, LECTURES["photosynthesis.mp4"][0][2])
    # the list names videos by the file uploaded, newest first, never by storage id
    expect(page.locator("#queue-list .q-name")).to_have_text(["photosynthesis.mp4", "french-revolution.mp4"])
    listed = page.locator("#queue-list").inner_text()
    assert queue_id not in listed and french not in listed

    expected = api_search(tutor, QUESTION)["moments"][0]
    assert expected["queue_id"] == queue_id and "At night" in expected["text"], expected
    assert expected["start_seconds"] >= 20  # a moment well inside the lecture: landing there is a real seek

    searches: list[str] = []
    page.on("request", lambda request: searches.append(request.url) if "/api/search?" in request.url else None)
    page.get_by_label("Search all your lectures").press_sequentially(QUESTION, delay=25)
    first = page.locator("#search-results li").first
    expect(first.locator(".hit-text")).to_have_text(expected["text"])
    marked = [expected["text"][start:end] for start, end in expected["highlights"]]
    assert marked
    expect(first.locator("mark")).to_have_text(marked)  # the words of the whole question, not of a prefix
    assert 1 <= len(searches) <= len(QUESTION) // 4, searches  # debounced: not one request per keystroke
    expect(page.locator("#search-message")).to_contain_text("found")
    expect(first.locator(".hit-file")).to_have_text("photosynthesis.mp4")
    expect(first.locator(".hit-time")).to_have_text(short_clock(expected["start_seconds"]))
    expect(first.locator(".hit-by")).to_have_attribute("data-retriever", expected["retriever"])
    expect(first.locator(".hit-by")).to_contain_text("found by")
    names = set(page.locator("#search-results .hit-file").all_inner_texts())
    assert names <= {"photosynthesis.mp4", "french-revolution.mp4"}, names
    screenshot(page, "01-results")

    clicked = time.monotonic()
    first.get_by_role("button").click()
    page.wait_for_function(PLAYING)
    assert_played_from(page, expected["start_seconds"], clicked)
    at = page.evaluate(f"{VIDEO}.currentTime")
    page.wait_for_function(f"(at) => {VIDEO}.currentTime > at + 0.5 && !{VIDEO}.paused", arg=at)  # it plays on
    assert page.evaluate(f"{VIDEO}.getAttribute('src')").startswith("/media/")

    page.wait_for_function(CAPTIONS_SHOWING)
    page.wait_for_function(ACTIVE_CUES)
    now = page.evaluate(f"{VIDEO}.currentTime")
    cues = page.evaluate(ACTIVE_CUES)
    assert cues == [spoken_at("photosynthesis.mp4", now)], (now, cues)  # that moment's caption, and only it
    expect(page.locator("#player-file")).to_have_text("photosynthesis.mp4")
    expect(page.locator("#player-message")).to_have_text(
        f"Playing photosynthesis.mp4 from {short_clock(expected['start_seconds'])}.")
    # the transcript panel shows the line being spoken
    spoken = spoken_at("photosynthesis.mp4", page.evaluate(f"{VIDEO}.currentTime"))
    expect(page.locator("#lines li.is-now .line-text")).to_have_text(spoken)
    expect(page.locator("#lines li.is-now .line-seek")).to_have_attribute("aria-current", "true")
    screenshot(page, "02-playing-the-moment")


def test_the_transcript_follows_playback_seeks_on_click_and_on_enter_and_finds_words_at_360px(
    search_app: ServedApp, tutor: httpx.Client, lecture_files: dict[str, Path], page: Page,
    screenshot: Callable[[Page, str], Path],
) -> None:
    processed(tutor, "photosynthesis.mp4", lecture_files["photosynthesis.mp4"].read_bytes())
    page.set_viewport_size({"width": 360, "height": 740})
    sign_in(page, search_app)
    page.get_by_role("button", name="Watch photosynthesis.mp4").click()
    expect(page.locator("#player-title")).to_be_focused()
    lines = page.locator("#lines li")
    script = LECTURES["photosynthesis.mp4"]
    expect(lines).to_have_count(len(script))
    expect(lines.locator(".line-time")).to_have_text([short_clock(start) for start, _, _ in script])
    expect(lines.locator(".line-text")).to_have_text([text for _, _, text in script])
    expect(page.locator("#player-message")).to_have_text("photosynthesis.mp4 is ready to play from 0:00.")
    assert page.evaluate(f"{VIDEO}.paused")  # Watch opens the player; it does not start by itself
    page.wait_for_function(CAPTIONS_SHOWING)  # captions on by default
    assert page.evaluate(UNLABELLED_CONTROLS) == []  # the find box and the player have names too

    # click a line: playback starts there, and the panel marks that line
    clicked = time.monotonic()
    lines.nth(2).click()
    page.wait_for_function(PLAYING)
    assert_played_from(page, script[2][0], clicked)
    expect(page.locator("#lines li.is-now")).to_have_attribute("data-index", "2")
    screenshot(page, "01-clicked-a-line")

    # keyboard: one tab stop in the list, arrows move, Enter seeks
    lines.nth(2).locator("button").focus()
    page.keyboard.press("ArrowDown")
    expect(lines.nth(3).locator("button")).to_be_focused()
    pressed = time.monotonic()
    page.keyboard.press("Enter")
    expect(page.locator("#player-message")).to_have_text(
        f"Playing photosynthesis.mp4 from {short_clock(script[3][0])}.")  # the key press moved playback
    page.wait_for_function(PLAYING)
    assert_played_from(page, script[3][0], pressed)
    expect(page.locator("#lines li.is-now")).to_have_attribute("data-index", "3")
    assert page.locator("#lines .line-seek[tabindex='0']").count() == 1

    # find in the transcript: only the lines with every word stay, the words marked
    find = page.get_by_label("Find in this transcript")
    find.fill("sugar")
    expect(lines.locator("visible=true")).to_have_count(2)
    expect(page.locator("#lines li:visible mark")).to_have_text(["sugar", "sugar"])
    expect(page.locator("#find-message")).to_have_text(f"2 of {len(script)} lines match “sugar”.")
    screenshot(page, "02-find-sugar")
    find.press("Enter")  # to the first line found
    expect(lines.nth(1).locator("button")).to_be_focused()
    page.keyboard.press("ArrowDown")  # the next line found, skipping those filtered out
    expect(lines.nth(4).locator("button")).to_be_focused()
    pressed = time.monotonic()
    page.keyboard.press("Enter")
    expect(page.locator("#player-message")).to_have_text(
        f"Playing photosynthesis.mp4 from {short_clock(script[4][0])}.")  # the key press moved playback
    page.wait_for_function(f"() => !{VIDEO}.seeking && {VIDEO}.currentTime >= {script[4][0]}")
    assert_played_from(page, script[4][0], pressed)
    expect(page.locator("#lines li.is-now")).to_have_attribute("data-index", "4")
    find.fill("SUGAR Night")
    expect(lines.locator("visible=true")).to_have_count(1)
    expect(page.locator("#lines li:visible mark")).to_have_text(["night", "sugar"])  # as the line says them
    find.fill("quantum")
    expect(lines.locator("visible=true")).to_have_count(0)
    expect(page.locator("#find-message")).to_have_text("No line has “quantum”.")
    find.press("Escape")
    expect(lines.locator("visible=true")).to_have_count(len(script))
    expect(page.locator("#lines mark")).to_have_count(0)

    # the panel follows playback: the line being spoken is brought into the panel's view. Paused, so that only the
    # seeks below move playback (a lecture playing on by itself would change the line at a time of its own).
    # Reduced motion: the panel jumps instead of scrolling smoothly, so "in view" is a state, not a moment.
    page.emulate_media(reduced_motion="reduce")
    page.evaluate(f"{VIDEO}.pause()")
    last = len(script) - 1
    assert page.evaluate("(() => { const b = document.getElementById('lines'); return b.scrollHeight > b.clientHeight; })()")
    seek_to(page, script[0][0] + 1)
    expect(page.locator("#lines li.is-now")).to_have_attribute("data-index", "0")  # the page saw the first line
    page.wait_for_function(LINE_IN_VIEW, arg=0)
    seek_to(page, script[last][0] + 1)
    expect(page.locator("#lines li.is-now")).to_have_attribute("data-index", str(last))
    page.wait_for_function(LINE_IN_VIEW, arg=last)
    # scrolled away without the wheel (the scroll bar, say), then moved within the same line: the line comes back
    page.evaluate("document.getElementById('lines').scrollTop = 0")
    assert not page.evaluate(LINE_IN_VIEW, last)
    seek_to(page, script[last][0] + 3)
    page.wait_for_function(LINE_IN_VIEW, arg=last)
    # a line reached while the find box hid it is brought into view once the box is cleared
    seek_to(page, script[0][0] + 1)
    expect(page.locator("#lines li.is-now")).to_have_attribute("data-index", "0")
    page.wait_for_function(LINE_IN_VIEW, arg=0)
    find.fill("Welcome")
    expect(lines.locator("visible=true")).to_have_count(1)
    seek_to(page, script[last][0] + 1)
    expect(page.locator("#lines li.is-now")).to_have_attribute("data-index", str(last))
    assert not page.evaluate(LINE_IN_VIEW, last)  # hidden
    find.press("Escape")
    expect(lines.locator("visible=true")).to_have_count(len(script))
    page.wait_for_function(LINE_IN_VIEW, arg=last)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "03-following-at-360px")

    page.get_by_role("button", name="Close the player").click()
    expect(page.locator("#player")).to_be_hidden()
    assert page.evaluate(f"{VIDEO}.paused")


def test_links_are_renewed_before_they_expire_without_stopping_playback(
    search_app: ServedApp, tutor: httpx.Client, lecture_files: dict[str, Path], page: Page,
) -> None:
    processed(tutor, "photosynthesis.mp4", lecture_files["photosynthesis.mp4"].read_bytes())
    page.clock.install()  # time runs as usual; fast_forward jumps to just before the links expire
    sign_in(page, search_app)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if request.url.endswith("/media") else None)
    page.get_by_role("button", name="Watch photosynthesis.mp4").click()
    page.wait_for_function(CAPTIONS_SHOWING)
    page.locator("#lines li").nth(1).click()
    page.wait_for_function(PLAYING)
    first_link = page.evaluate(f"{VIDEO}.getAttribute('src')")
    assert len(asked) == 1

    time.sleep(1.1)  # the renewed link's expiry (whole seconds) differs from the first's
    before = page.evaluate(f"{VIDEO}.currentTime")
    renewing = time.monotonic()
    page.clock.fast_forward(Settings().media_link_seconds * 1000 - 50_000)  # past the renewal, before the expiry
    page.wait_for_function(f"(first) => {VIDEO}.getAttribute('src') !== first", arg=first_link)
    assert len(asked) == 2
    page.wait_for_function(PLAYING)
    after = page.evaluate(f"{VIDEO}.currentTime")
    assert_played_from(page, before, renewing)  # it carried on from where it was
    page.wait_for_function(CAPTIONS_SHOWING)
    assert re.fullmatch(r"/media/[\w-]+\.[\w-]+", page.evaluate(f"{VIDEO}.getAttribute('src')"))


def test_a_refused_video_link_is_renewed_once_and_the_moment_still_plays(
    search_app: ServedApp, tutor: httpx.Client, lecture_files: dict[str, Path], page: Page,
) -> None:
    queue_id = processed(tutor, "photosynthesis.mp4", lecture_files["photosynthesis.mp4"].read_bytes())
    expected = api_search(tutor, QUESTION, queue_id=queue_id)["moments"][0]
    sign_in(page, search_app)
    refused: list[str] = []

    def expire_the_first_video_link(route: Any) -> None:  # as if the computer slept past the link's expiry
        if route.request.resource_type == "media" and not refused:
            refused.append(route.request.url)
            route.fulfill(status=403, content_type="application/json",
                          body='{"error": "this media link has expired; ask for a new one"}')
        else:
            route.continue_()

    page.route("**/media/**", expire_the_first_video_link)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if request.url.endswith("/media") else None)
    search = page.get_by_label("Search all your lectures")
    search.fill(QUESTION)
    first = page.locator("#search-results li").first
    expect(first.locator(".hit-text")).to_have_text(expected["text"])
    search.press("ArrowDown")  # to the results by keyboard
    expect(first.get_by_role("button")).to_be_focused()
    pressed = time.monotonic()
    page.keyboard.press("Enter")
    page.wait_for_function(PLAYING)
    assert_played_from(page, expected["start_seconds"], pressed)
    assert len(refused) == 1 and len(asked) == 2, (refused, asked)  # refused once, a new link asked for once


def test_server_text_is_shown_as_text_never_parsed_as_html(
    search_app: ServedApp, tutor: httpx.Client, page: Page,
) -> None:
    queue_id = processed(tutor, MARKUP, fake_video(seed=97))
    sign_in(page, search_app)
    page.get_by_label("Search all your lectures").fill("bold claims")
    hit = page.locator(f'#search-results li[data-queue="{queue_id}"]')
    expect(hit.locator(".hit-text")).to_have_text(MARKUP_LINE)
    expect(hit.locator("mark")).to_have_text(["bold", "claims"])
    assert page.locator("#search-results img, #search-results b").count() == 0
    assert page.title() != "1"

    # a question of stop words only: no moment, and the API's notice says why
    search = page.get_by_label("Search all your lectures")
    search.fill("the of and")
    expect(page.locator("#search-results li")).to_have_count(0)
    expect(page.locator("#search-notice")).to_be_visible()
    notice = page.locator("#search-notice").inner_text()
    assert notice, "the API's notice is shown"
    assert notice[0].isupper()
    # the count and the notice are read out together; the notice is shown once
    expect(page.locator("#search-message")).to_have_text(f"No moment of your lectures answers “the of and”. {notice}")
    read_out = page.locator("#search-message .sr-only")
    expect(read_out).to_have_text(f" {notice}")
    box = read_out.bounding_box()
    assert box is not None and box["width"] <= 1 and box["height"] <= 1  # for screen readers only
    search.press("Escape")
    expect(search).to_have_value("")
    expect(page.locator("#search-message")).to_have_text("")


def test_when_no_embedding_server_answers_the_page_says_the_moments_came_from_keywords(
    web_stack: WebStack, page: Page, screenshot: Callable[[Page, str], Path],
) -> None:
    with socket.socket() as dead:  # bound, never listening: the question cannot be embedded
        dead.bind(("127.0.0.1", 0))
        # the lecture is embedded by the real server (the embed step's own client); questions go to the dead one
        app = scripted_app(web_stack, "search-keywords",
                           BGE_HG_EMBEDDING_SERVER_API_URL=f"http://127.0.0.1:{dead.getsockname()[1]}")
        with dev_tutor(app) as tutor:
            queue_id = processed(tutor, "french-revolution.mp4", fake_video(seed=98))
        sign_in(page, app)
        page.get_by_label("Search all your lectures").fill("storming of the Bastille")
        first = page.locator("#search-results li").first
        expect(first).to_have_attribute("data-queue", queue_id)
        expect(first.locator("mark")).to_have_text(["stormed", "Bastille"])
        expect(first.locator(".hit-by")).to_have_text("found by its words")
        notice = page.locator("#search-notice")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text("Keywords only")
        expect(page.locator("#search-message")).to_have_text(f"2 moments found. {notice.inner_text()}")
        screenshot(page, "01-keywords-only")
