"""``handlers.signatures``: what the header alone refuses, what needs the body, and that
every refusal names its check without quoting a key."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.signatures import CHECKS, MAX_SIGNATURE_CHARS, SignatureRejected, StepSignatures
from local.qstash.settings import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY
from tests.handlers.signing import sign

URL = "https://learn.example.com/api/video-processing/steps/compress"
BODY = b'{"queue_id": "q", "step": "compress", "attempt": 1}'
SIGNATURES = StepSignatures(DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY, clock_tolerance=30)


def rejected(signature: str | None, body: bytes | None = None, url: str = URL) -> SignatureRejected:
    with pytest.raises(SignatureRejected) as caught:
        SIGNATURES.check_header(signature, url)
        assert signature is not None and body is not None
        SIGNATURES.verify(signature, body, url)
    message = str(caught.value)
    assert DEV_CURRENT_SIGNING_KEY not in message and DEV_NEXT_SIGNING_KEY not in message
    assert caught.value.check in CHECKS
    return caught.value


def test_a_token_signed_with_either_key_passes_both_stages() -> None:
    for key in (DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY):
        token = sign(BODY, URL, key=key)
        SIGNATURES.check_header(token, URL)
        SIGNATURES.verify(token, BODY, URL)


@pytest.mark.parametrize(
    ("make_signature", "check"),
    [
        (lambda: None, "missing header"),
        (lambda: "", "missing header"),
        (lambda: "hello", "not a JWT"),
        (lambda: "a.b.c", "not a JWT"),
        (lambda: "x" * 10 + "." + "y" * MAX_SIGNATURE_CHARS + ".z", "not a JWT"),
        (lambda: sign(BODY, URL, key="sig_NotTheRealKeyButJustAsLong00"), "bad signature or key"),
        (lambda: sign(BODY, URL, alg="none"), "bad signature or key"),
        (lambda: sign(BODY, URL, iss="Someone"), "wrong issuer"),
        (lambda: sign(BODY, URL, exp_offset=-120), "expired"),
        (lambda: sign(BODY, URL, nbf=10**10), "not yet valid"),
        (lambda: sign(BODY, URL.replace("compress", "embed")), "URL mismatch"),
    ],
)
def test_the_header_alone_refuses_with_the_check_that_failed(
    make_signature: Callable[[], str | None], check: str
) -> None:
    # Signed when the test runs, not when it is collected: a token lives 5 minutes, a suite longer.
    with pytest.raises(SignatureRejected) as caught:
        SIGNATURES.check_header(make_signature(), URL)
    assert caught.value.check == check
    assert f"({check})" in str(caught.value)
    assert DEV_CURRENT_SIGNING_KEY not in str(caught.value)


def test_a_changed_body_is_a_body_hash_mismatch_found_only_with_the_body() -> None:
    token = sign(BODY, URL)
    SIGNATURES.check_header(token, URL)  # nothing wrong yet: the body is unread
    assert rejected(token, BODY.replace(b"1}", b"2}")).check == "body hash mismatch"
    assert rejected(token, b"\xff\xfe").check == "body hash mismatch"


def test_a_url_mismatch_says_which_url_the_token_was_for() -> None:
    error = rejected(sign(BODY, "https://old.example.com/x"))
    assert "https://old.example.com/x" in str(error) and URL in str(error)
    assert "NEXTAUTH_URL" in str(error)


def test_a_huge_sub_claim_is_not_echoed_whole() -> None:
    error = rejected(sign(BODY, "https://x/" + "a" * 2_000))
    assert error.check == "URL mismatch" and len(str(error)) < 500


@given(st.text(max_size=300))
def test_any_header_value_is_refused_with_a_named_check_never_another_error(value: str) -> None:
    with pytest.raises(SignatureRejected) as caught:
        SIGNATURES.check_header(value, URL)
    assert caught.value.check in CHECKS
