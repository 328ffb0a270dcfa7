"""What the audio-upload and sound-only-video tests both check of a finished recording: jfk's words in the
transcript, and the player's link playing the original upload (its own Content-Type, Range) with captions."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.mediafiles import JFK_FLAC

STATUS = "/api/video-processing/status"
SENTENCE = "ask not what your country can do for you"
needs_jfk = pytest.mark.skipif(not JFK_FLAC.exists(), reason="needs ../shared/media/jfk.flac (the shared recordings)")


def words(text: str) -> str:
    """``text`` lower-cased, punctuation gone, one space between words."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def assert_transcribed_and_plays_the_original(
    http: httpx.Client, queue_id: str, content: bytes, content_type: str
) -> None:
    """The transcript holds :data:`SENTENCE`; the media link plays ``content`` as uploaded, typed
    ``content_type``, answers a Range request, and its captions are jfk's."""
    transcript = http.get(f"{STATUS}/{queue_id}/transcript", params={"format": "txt"})
    assert transcript.status_code == 200 and SENTENCE in words(transcript.text), transcript.text

    links = http.get(f"{STATUS}/{queue_id}/media").json()
    assert links["media"] == "audio" and links["captions_url"]
    whole = http.get(links["video_url"])
    assert whole.status_code == 200 and whole.content == content
    assert whole.headers["content-type"] == content_type
    part = http.get(links["video_url"], headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == content[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(content)}"
    captions = http.get(links["captions_url"])
    assert captions.text.startswith("WEBVTT") and "country" in captions.text.lower()
