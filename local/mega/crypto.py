"""The server side of MEGA's account cryptography, written independently of the client.

MEGA never sees a password: the client derives an AES key from it, proves it
knows the key by a hash (``uh``), and receives its master key encrypted under
that key. Two derivations exist:

* v2 accounts (``us0`` answers ``{"v": 2, "s": salt}``): PBKDF2-HMAC-SHA512,
  100 000 iterations, 32 bytes; the first 16 are the password key, the last 16
  (base64url) are ``uh``.
* v1 accounts (``us0`` answers ``{"v": 1}``): the password key is 65 536 rounds
  of AES over the password's 16-byte blocks; ``uh`` is an AES hash of the email.

Keys travel as big-endian 32-bit word arrays ("a32") in unpadded base64url.
"""

from __future__ import annotations

import base64
import hashlib
import struct

from Crypto.Cipher import AES

PBKDF2_ITERATIONS = 100_000
_V1_INITIAL_KEY = (0x93C467E3, 0x7DB0C7A4, 0xD1BE3F81, 0x0152CB56)


def b64encode(data: bytes) -> str:
    """Unpadded base64url, MEGA's only encoding."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def words(data: bytes) -> tuple[int, ...]:
    """Bytes as big-endian 32-bit words (zero-padded to a multiple of 4)."""
    data += b"\0" * (-len(data) % 4)
    return struct.unpack(f">{len(data) // 4}I", data)


def packed(values: tuple[int, ...] | list[int]) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """AES-ECB over whole 16-byte blocks: how MEGA wraps keys in keys."""
    return AES.new(key, AES.MODE_ECB).encrypt(data)


def derive_v2(password: str, salt: bytes) -> tuple[bytes, str]:
    """(password key, user hash ``uh``) of a v2 account."""
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, dklen=32)
    return derived[:16], b64encode(derived[16:])


def derive_v1(email: str, password: str) -> tuple[bytes, str]:
    """(password key, user hash ``uh``) of a v1 account."""
    password_words = words(password.encode("latin-1"))
    blocks = [packed((password_words[i : i + 4] + (0, 0, 0, 0))[:4]) for i in range(0, len(password_words), 4)]
    key = packed(_V1_INITIAL_KEY)
    ciphers = [AES.new(block, AES.MODE_ECB) for block in blocks]
    for _ in range(65_536):
        for cipher in ciphers:
            key = cipher.encrypt(key)
    return key, _v1_user_hash(email, key)


def _v1_user_hash(email: str, password_key: bytes) -> str:
    email_words = words(email.encode("latin-1"))
    folded = [0, 0, 0, 0]
    for index, word in enumerate(email_words):
        folded[index % 4] ^= word
    block = packed(folded)
    cipher = AES.new(password_key, AES.MODE_ECB)
    for _ in range(16_384):
        block = cipher.encrypt(block)
    hashed = words(block)
    return b64encode(packed((hashed[0], hashed[2])))


def mpi(value: int) -> bytes:
    """A multi-precision integer as MEGA sends RSA values: 16-bit bit length, then big-endian bytes."""
    bits = value.bit_length()
    return bits.to_bytes(2, "big") + value.to_bytes((bits + 7) // 8, "big")
