"""Signed media links (api/media_links.py): bound to one artifact, tamper-proof, expiring."""

from __future__ import annotations

import base64
import json

import pytest

from api.media_links import InvalidMediaLink, MediaSigner, derive_key

SIGNER = MediaSigner(derive_key("a secret for the tests, long enough"), ttl_seconds=60)
GRANT = ("queue-1", "tutor-a", "video", "tutor-a/queue-1/compressed.mp4")


def test_a_link_opens_exactly_what_it_names_until_it_expires() -> None:
    token, expires = SIGNER.sign(GRANT, now=1000)
    assert expires == 1060
    grant = SIGNER.verify(token, now=1059)
    assert (grant.queue_id, grant.owner_id, grant.kind, grant.key) == GRANT
    with pytest.raises(InvalidMediaLink, match="expired"):
        SIGNER.verify(token, now=1060)


def test_a_link_pointed_at_another_artifact_is_refused() -> None:
    token, _ = SIGNER.sign(GRANT, now=1000)
    payload, signature = token.split(".")
    other = json.dumps(["queue-2", "tutor-b", "video", "tutor-b/queue-2/compressed.mp4", 1060]).encode()
    forged = base64.urlsafe_b64encode(other).rstrip(b"=").decode() + "." + signature
    with pytest.raises(InvalidMediaLink, match="altered"):
        SIGNER.verify(forged, now=1001)


@pytest.mark.parametrize("token", ["", "nodot", ".sig", "payload.", "a" * 5000, "e30.AAAA", "é.ß", "e30.λλλ"])
def test_garbage_is_not_a_link(token: str) -> None:
    with pytest.raises(InvalidMediaLink):
        SIGNER.verify(token, now=1000)


def test_another_key_does_not_verify() -> None:
    token, _ = MediaSigner(derive_key("another secret, also long enough")).sign(GRANT, now=1000)
    with pytest.raises(InvalidMediaLink):
        SIGNER.verify(token, now=1001)


def test_derived_keys_differ_from_their_secret() -> None:
    assert derive_key("s" * 32) != b"s" * 32
    with pytest.raises(ValueError):
        MediaSigner(b"short")
