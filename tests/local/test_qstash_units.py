"""Unit tests of the local QStash server's pure parts: backoff, Retry-After,
retry-delay expressions, duration headers and signatures."""

from __future__ import annotations

import email.utils
import math
from datetime import datetime, timedelta, timezone

import pytest
from qstash import Receiver
from qstash.errors import SignatureError

from local.qstash.backoff import default_backoff, next_delay, parse_retry_after
from local.qstash.durations import DELAY_UNITS, GO_UNITS, TIMEOUT_UNITS, parse_duration
from local.qstash.expressions import ExpressionError, RetryDelayExpression
from local.qstash.settings import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY
from local.qstash.signing import body_hash, sign

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def test_default_backoff_is_e_to_the_2_5_n_capped_at_a_day() -> None:
    """Protocol: default backoff min(86400, e^(2.5 n)) s after the n-th failure."""
    assert default_backoff(1) == pytest.approx(12.18, abs=0.01)
    assert default_backoff(2) == pytest.approx(148.41, abs=0.01)
    assert default_backoff(3) == pytest.approx(1808.04, abs=0.01)
    assert default_backoff(4) == pytest.approx(math.exp(10))
    assert default_backoff(5) == 86400
    assert default_backoff(1000) == 86400


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("120", 120.0),
        ("6m5s", 365.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("86400", 86400.0),
    ],
)
def test_retry_after_seconds_and_go_durations(value: str, seconds: float) -> None:
    """Protocol: Retry-After as seconds or a Go duration; 0 means now."""
    assert parse_retry_after(value, NOW) == pytest.approx(seconds)


def test_retry_after_http_date() -> None:
    """Protocol: Retry-After as an HTTP date; a past date means now."""
    later = email.utils.format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    earlier = email.utils.format_datetime(NOW - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, NOW) == pytest.approx(30)
    assert parse_retry_after(earlier, NOW) == 0


@pytest.mark.parametrize("value", ["86401", "25h", "2d", "soon", "", "-5", "1x"])
def test_retry_after_over_a_day_or_malformed_is_ignored(value: str) -> None:
    """Protocol: a Retry-After over a day (or unparseable) is ignored."""
    assert parse_retry_after(value, NOW) is None


def test_next_delay_precedence() -> None:
    """Protocol: Retry-After beats Upstash-Retry-Delay, which beats the default backoff."""
    expression = RetryDelayExpression("pow(2, retried) * 1000")
    assert next_delay(retried=0, retry_after=3.0, expression=expression) == 3.0
    assert next_delay(retried=3, retry_after=None, expression=expression) == 8.0
    assert next_delay(retried=0, retry_after=None, expression=None) == pytest.approx(12.18, abs=0.01)
    assert next_delay(retried=0, retry_after=None, expression=None, scale=0.001) == pytest.approx(0.01218, abs=1e-4)
    huge = RetryDelayExpression("pow(10, 400)")
    assert next_delay(retried=0, retry_after=None, expression=huge) == 86400


@pytest.mark.parametrize(
    ("text", "retried", "millis"),
    [
        ("1000", 0, 1000),
        ("1000 * (1 + retried)", 2, 3000),
        ("pow(2, retried) * 1000", 3, 8000),
        ("max(10, pow(2, retried))", 2, 10),
        ("min(5000, exp(retried))", 0, 1),
        ("sqrt(16) + abs(-1) + floor(1.7) + ceil(1.2) + round(2.4)", 0, 10),
        ("2 ** retried", 4, 16),
        ("-retried + 10 % 4 // 1", 1, 1),
    ],
)
def test_retry_delay_expressions(text: str, retried: int, millis: float) -> None:
    """Protocol: Upstash-Retry-Delay, milliseconds over `retried` with the listed functions."""
    assert RetryDelayExpression(text).evaluate(retried) == pytest.approx(millis)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "retried.__class__",
        "open('/etc/passwd')",
        "[1, 2]",
        "x + 1",
        "pow(2)",
        "max(a=1)",
        "1 if retried else 2",
        "lambda: 1",
        "'1000'",
        "True",
        "1 << 3",
        "",
        "1" * 600,
    ],
)
def test_retry_delay_expressions_refused(text: str) -> None:
    """Protocol: only arithmetic over `retried` and the listed functions is accepted."""
    with pytest.raises(ExpressionError):
        RetryDelayExpression(text)


def test_retry_delay_expression_domain_errors_and_overflow() -> None:
    """Protocol: a bad maths result falls back (None); an overflow is infinite (capped later)."""
    assert RetryDelayExpression("sqrt(-1)").evaluate(0) is None
    assert RetryDelayExpression("1 / (retried - 1)").evaluate(1) is None
    assert RetryDelayExpression("pow(10, 1000)").evaluate(0) == math.inf
    assert RetryDelayExpression("10 ** 10 ** 10").evaluate(0) == math.inf


@pytest.mark.parametrize(
    ("text", "units", "seconds"),
    [
        ("10s", DELAY_UNITS, 10),
        ("5m", DELAY_UNITS, 300),
        ("2h", DELAY_UNITS, 7200),
        ("1d", DELAY_UNITS, 86400),
        ("1h30m", DELAY_UNITS, 5400),
        ("30s", TIMEOUT_UNITS, 30),
        ("6m5s", GO_UNITS, 365),
    ],
)
def test_durations(text: str, units: frozenset[str], seconds: float) -> None:
    """Protocol: Upstash-Delay `<n>s|m|h|d`, Upstash-Timeout `<n>s|m|h`, Go durations."""
    assert parse_duration(text, units) == seconds


@pytest.mark.parametrize(
    ("text", "units"),
    [("10", DELAY_UNITS), ("1d", TIMEOUT_UNITS), ("s", DELAY_UNITS), ("1w", DELAY_UNITS), ("", DELAY_UNITS)],
)
def test_bad_durations(text: str, units: frozenset[str]) -> None:
    """Protocol: malformed durations are refused (the API answers 400)."""
    with pytest.raises(ValueError):
        parse_duration(text, units)


def test_signature_verifies_with_the_official_receiver() -> None:
    """Protocol: Upstash-Signature is an HS256 JWT that qstash.Receiver accepts."""
    body = b'{"hello": "world"}'
    url = "http://127.0.0.1:9/hook?x=1"
    token = sign(url=url, body=body, key=DEV_CURRENT_SIGNING_KEY)
    receiver = Receiver(DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY)
    receiver.verify(signature=token, body=body.decode(), url=url)
    with pytest.raises(SignatureError):
        receiver.verify(signature=token, body=body.decode() + " ", url=url)
    with pytest.raises(SignatureError):
        receiver.verify(signature=token, body=body.decode(), url=url + "&y=2")
    with pytest.raises(SignatureError):
        Receiver("sig_wrong_wrong_wrong_wrong_wrong", "sig_also_wrong_wrong_wrong_wrong").verify(
            signature=token, body=body.decode(), url=url
        )


def test_signature_claims() -> None:
    """Protocol: claims iss, sub, exp (+5 min), nbf, iat, jti, body (unpadded base64url sha256)."""
    import jwt

    token = sign(url="http://x/y", body=b"", key=DEV_CURRENT_SIGNING_KEY, now=1_700_000_000)
    claims = jwt.decode(token, DEV_CURRENT_SIGNING_KEY, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})
    assert claims["iss"] == "Upstash"
    assert claims["sub"] == "http://x/y"
    assert claims["iat"] == claims["nbf"] == 1_700_000_000
    assert claims["exp"] == 1_700_000_300
    assert claims["jti"]
    assert claims["body"] == body_hash(b"") == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"


def test_short_signing_key_signs_without_warning() -> None:
    """Signature: any configured key signs (no PyJWT insecure-key warning in the server)."""
    import base64
    import hashlib
    import hmac
    import json

    header, payload, signature = sign(url="http://x/", body=b"b", key="short").split(".")
    expected = hmac.new(b"short", f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "==") == expected
    assert json.loads(base64.urlsafe_b64decode(payload + "==="))["sub"] == "http://x/"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Configuration: dev-server defaults; QSTASH_* and LOCAL_QSTASH_* variables; kwargs win;
    generic names such as PORT are not read."""
    from pathlib import Path

    from local.qstash.settings import DEV_TOKEN, Settings

    for name in ("QSTASH_TOKEN", "QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY", "LOCAL_QSTASH_PORT", "LOCAL_QSTASH_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORT", "9999")
    defaults = Settings()
    assert (defaults.port, defaults.token.get_secret_value()) == (8080, DEV_TOKEN)
    assert defaults.current_signing_key.get_secret_value() == DEV_CURRENT_SIGNING_KEY
    assert defaults.next_signing_key.get_secret_value() == DEV_NEXT_SIGNING_KEY
    assert defaults.max_message_bytes == 1_000_000 and defaults.max_delay_s == 7 * 86400
    monkeypatch.setenv("QSTASH_TOKEN", "tok")
    monkeypatch.setenv("LOCAL_QSTASH_PORT", "7001")
    monkeypatch.setenv("LOCAL_QSTASH_DB", "/tmp/q.sqlite3")
    monkeypatch.setenv("LOCAL_QSTASH_CONCURRENCY", "4")
    configured = Settings()
    assert configured.token.get_secret_value() == "tok"
    assert (configured.port, configured.db_path, configured.concurrency) == (7001, Path("/tmp/q.sqlite3"), 4)
    assert Settings(port=1).port == 1
