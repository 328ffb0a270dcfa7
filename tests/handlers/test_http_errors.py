"""Sleep detection: every kind of answer (or non-answer) a model server gives, classified.

The pure functions are fed real ``httpx`` responses and exceptions; the last
tests get them from real calls to fake servers on loopback (refused
connection, a server slower than the client's timeout, a dropped connection).
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time

import httpx
import pytest

from handlers.errors import PermanentError, ProviderError, ServerSleeping, TransientError
from handlers.http_errors import (
    RemoteServer,
    error_for_exception,
    error_for_response,
    parse_retry_after,
    raise_for_response,
)
from tests.handlers.model_fakes import SLEEPING_SPACE_HTML, fake_server, plain

SERVER = RemoteServer(
    "Whisper server", "https://someone-whisper.hf.space", "WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL", "WHISPER_API_KEY"
)
HOST = "someone-whisper.hf.space"


def response(status: int, body: object = None, *, text: str | None = None, headers: dict[str, str] | None = None,
             path: str = "/v1/audio/transcriptions") -> httpx.Response:
    request = httpx.Request("POST", f"https://{HOST}{path}")
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=request)
    if body is None:
        return httpx.Response(status, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def classify(resp: httpx.Response) -> ProviderError:
    error = error_for_response(resp, SERVER)
    assert error is not None
    assert "Whisper server" in str(error) and HOST in str(error), str(error)
    return error


# --- success ---------------------------------------------------------------------


def test_success_is_not_an_error() -> None:
    ok = response(200, {"text": "hello"})
    assert error_for_response(ok, SERVER) is None
    assert raise_for_response(ok, SERVER) is ok
    assert error_for_response(response(200, text="plain words", headers={"content-type": "text/plain"}), SERVER) is None


def test_ordinary_html_page_with_200_is_not_sleep() -> None:
    assert error_for_response(response(200, text="<html><body>Welcome</body></html>"), SERVER) is None


# --- sleeping --------------------------------------------------------------------


def test_503_loading_json_is_server_sleeping_with_estimated_time() -> None:
    error = classify(response(503, {"error": "Model BAAI/bge-m3 is currently loading", "estimated_time": 20.0}))
    assert isinstance(error, ServerSleeping)
    assert error.retry_after == 20.0
    assert "currently loading" in str(error)
    with pytest.raises(ServerSleeping):
        raise_for_response(response(503, {"error": "x is currently loading", "estimated_time": 1}), SERVER)


def test_transient_messages_say_what_happened_and_promise_no_retry() -> None:
    """Regression (chaos, Whisper that never wakes): the last transient reason becomes the queue's failure
    reason, which the tutor reads once the retries are spent: it said "retry in about 1 s" and never "asleep"."""
    request = httpx.Request("POST", f"https://{HOST}/")
    errors = [
        classify(response(503, {"error": "Model tiny.en is currently loading", "estimated_time": 1.0})),
        classify(response(502, text="Bad Gateway", headers={"Retry-After": "30"})),
        classify(response(429, {"error": "slow down"}, headers={"Retry-After": "12"})),
        error_for_exception(httpx.ReadTimeout("timed out", request=request), SERVER),
        error_for_exception(httpx.ConnectError("refused", request=request), SERVER),
        error_for_exception(httpx.ReadError("reset", request=request), SERVER),
    ]
    for error in errors:
        assert "retry" not in str(error).lower(), str(error)
    sleeping = str(errors[0])
    assert sleeping.startswith(f"the Whisper server ({HOST}) is asleep or is loading its model"), sleeping
    assert "Model tiny.en is currently loading" in sleeping and "ready in about 1 s" in sleeping
    assert "in about 30 s" in str(errors[1]) and "in about 12 s" in str(errors[2])


def test_503_loading_without_estimated_time_uses_retry_after() -> None:
    error = classify(response(503, {"error": "Model is currently loading"}, headers={"Retry-After": "45"}))
    assert isinstance(error, ServerSleeping)
    assert error.retry_after == 45.0


@pytest.mark.parametrize("status", [200, 503, 404])
def test_html_sleeping_space_page_is_transient(status: int) -> None:
    error = classify(response(status, text=SLEEPING_SPACE_HTML, headers={"content-type": "text/html"}))
    assert isinstance(error, TransientError)
    assert isinstance(error, ServerSleeping)
    assert "sleeping" in str(error)
    assert "<" not in str(error) and "color" not in str(error)


@pytest.mark.parametrize("word", ["Starting", "Building"])
def test_html_starting_and_building_pages_are_transient(word: str) -> None:
    html = f"<!doctype html><html><body><h2>{word}</h2><p>this Space</p></body></html>"
    error = classify(response(503, text=html))
    assert isinstance(error, TransientError)
    assert word.lower() in str(error)


# --- other transient answers ------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 507])
def test_5xx_is_transient(status: int) -> None:
    error = classify(response(status, text="upstream connect error", headers={"content-type": "text/plain"}))
    assert type(error) is TransientError
    assert str(status) in str(error)
    assert "upstream connect error" in str(error)
    assert error.retry_after is None


def test_5xx_with_retry_after_carries_the_hint() -> None:
    error = classify(response(502, text="Bad Gateway", headers={"Retry-After": "30"}))
    assert error.retry_after == 30.0
    assert "30 s" in str(error)


def test_5xx_html_error_page_without_sleep_words_is_transient() -> None:
    error = classify(response(502, text="<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"))
    assert type(error) is TransientError
    assert "502 Bad Gateway nginx" in str(error)


def test_429_is_transient_with_retry_after() -> None:
    error = classify(response(429, {"error": "Rate limit reached"}, headers={"Retry-After": "12"}))
    assert type(error) is TransientError
    assert error.retry_after == 12.0
    assert "Rate limit reached" in str(error)


def test_retry_after_http_date() -> None:
    now = time.time()
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(90, abs=1)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now=now) == 0.0


# --- permanent answers --------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_bad_credentials_are_permanent_and_name_the_variable(status: int) -> None:
    error = classify(response(status, {"error": "Invalid token"}))
    assert type(error) is PermanentError
    assert "rejected our credentials (check WHISPER_API_KEY)" in str(error)
    assert "Invalid token" in str(error)


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (400, {"error": "The uploaded file 'a.wav' is empty. Send the audio in the 'file' field."}, "is empty"),
        (413, {"error": "The upload is 900 bytes, over the limit of 100"}, "too large"),
        (415, {"error": "unsupported media type audio/x-foo"}, "cannot read this file format"),
        (422, {"error": {"message": "language 'fr' is not supported", "type": "invalid_request_error"}}, "'fr'"),
        (422, {"detail": [{"loc": ["body", "temperature"], "msg": "must be <= 1", "type": "x"}]}, "temperature: must"),
    ],
    ids=["400", "413", "415", "422-openai", "422-fastapi"],
)
def test_input_errors_are_permanent_with_the_servers_message(status: int, body: object, words: str) -> None:
    error = classify(response(status, body))
    assert type(error) is PermanentError
    assert words in str(error)
    assert "{" not in str(error)


def test_404_says_to_check_the_url_variable() -> None:
    error = classify(response(404, {"detail": "Not Found"}))
    assert isinstance(error, PermanentError)
    assert "/v1/audio/transcriptions" in str(error)
    assert "WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL" in str(error)


def test_long_bodies_are_clipped() -> None:
    error = classify(response(400, text="x" * 5000, headers={"content-type": "text/plain"}))
    assert len(str(error)) < 500


# --- no answer at all ---------------------------------------------------------------


def test_exceptions_are_classified() -> None:
    request = httpx.Request("POST", "https://x/")
    cases: list[tuple[Exception, type[ProviderError], str]] = [
        (httpx.ConnectError("[Errno 111] Connection refused", request=request), TransientError, "could not be reached"),
        (httpx.ConnectTimeout("timed out", request=request), TransientError, "did not connect in time"),
        (httpx.ReadTimeout("timed out", request=request), TransientError, "did not answer in time"),
        (httpx.ReadError("reset", request=request), TransientError, "dropped the connection"),
        (httpx.RemoteProtocolError("closed", request=request), TransientError, "dropped the connection"),
        (httpx.UnsupportedProtocol("ftp", request=request), PermanentError, "WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL"),
    ]
    for exception, kind, words in cases:
        error = error_for_exception(exception, SERVER)
        assert type(error) is kind, (exception, error)
        assert words in str(error) and HOST in str(error)


def test_refused_connection_for_real() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connecting is refused
        server = RemoteServer("BGE embedding server", f"http://127.0.0.1:{port}")
        with pytest.raises(httpx.ConnectError) as caught:
            httpx.post(f"http://127.0.0.1:{port}/embed", json={}, timeout=2)
    error = error_for_exception(caught.value, server)
    assert type(error) is TransientError
    assert f"BGE embedding server (127.0.0.1:{port})" in str(error)


def test_server_slower_than_the_timeout_for_real() -> None:
    async def slow_answer(request: object, seen: object) -> object:
        await asyncio.sleep(1.5)
        return plain(200, "late")

    with fake_server(slow_answer) as server:
        remote = RemoteServer("Whisper server", server.url)
        with pytest.raises(httpx.ReadTimeout) as caught:
            httpx.post(f"{server.url}/v1/audio/transcriptions", timeout=0.3)
    error = error_for_exception(caught.value, remote)
    assert type(error) is TransientError
    assert "did not answer in time" in str(error)
