"""Accounts of the fake MEGA server: what ``us0`` and ``us`` answer, and who a session is.

An account's secrets (master key, salt, RSA key, user handle) are created once
and kept in ``accounts.json`` in the data directory, so files stored before a
restart stay readable; the password itself is never stored, only what MEGA
keeps: the salt, the user hash and the master key encrypted under the
password key.

Login answers like MEGA does for a full account: ``k`` (the master key
encrypted with the password key), ``privk`` (the RSA private key encrypted
with the master key) and ``csid`` (the session id encrypted with the RSA
public key). ``session="tsid"`` answers with a temporary session id instead
(``ts1 + AES(master key, ts1)``), as MEGA does for ephemeral accounts.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from Crypto.PublicKey import RSA

from local.mega.crypto import b64decode, b64encode, derive_v1, derive_v2, ecb_encrypt, mpi

EAGAIN, ENOENT, ESID = -3, -9, -15
SessionKind = Literal["csid", "tsid"]


@dataclass
class Account:
    email: str
    user_handle: str
    master_key: bytes
    version: int
    salt: bytes
    password_key: bytes
    user_hash: str
    rsa: tuple[int, int, int] | None = None
    """(p, q, d) of the account's RSA key; needed for ``csid`` sessions."""
    quota_bytes: int | None = None

    def prelogin(self) -> dict[str, Any]:
        """The answer to ``us0``: which derivation the client must use."""
        if self.version == 2:
            return {"v": 2, "s": b64encode(self.salt)}
        return {"v": 1}

    def login(self, session_id: bytes, kind: SessionKind) -> tuple[str, dict[str, Any]]:
        """(the session id the client will send back, the answer to ``us``)."""
        answer: dict[str, Any] = {
            "k": b64encode(ecb_encrypt(self.password_key, self.master_key)),
            "u": self.user_handle,
            "ach": 1,
        }
        if kind == "tsid" or self.rsa is None:
            challenge = session_id[:16].ljust(16, b"\0")
            tsid = challenge + ecb_encrypt(self.master_key, challenge)
            answer["tsid"] = b64encode(tsid)
            return answer["tsid"], answer
        p, q, d = self.rsa
        n = p * q
        sid = session_id[:43]
        # The client decrypts csid and keeps the first 43 bytes of the number,
        # so the plaintext must not start with a zero byte and must stay below n.
        plaintext = int.from_bytes(sid + secrets.token_bytes((n.bit_length() - 1) // 8 - len(sid)), "big")
        answer["csid"] = b64encode(mpi(pow(plaintext, 65537, n)))
        private = mpi(p) + mpi(q) + mpi(d) + mpi(pow(q, -1, p))
        private += b"\0" * (-len(private) % 16)
        answer["privk"] = b64encode(ecb_encrypt(self.master_key, private))
        return b64encode(sid), answer


def new_session_bytes() -> bytes:
    """43 random bytes whose first is not zero (see :meth:`Account.login`)."""
    return bytes([secrets.randbelow(255) + 1]) + secrets.token_bytes(42)


@dataclass
class AccountBook:
    """The configured accounts and the live sessions (in memory: a restart logs everyone out)."""

    path: Path
    accounts: dict[str, Account] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)

    def configure(
        self, email: str, password: str, *, version: int = 2, rsa_bits: int = 2048, quota_bytes: int | None = None
    ) -> Account:
        """Create the account, or update its password, keeping its master key and handle."""
        email = email.lower()
        kept = self._kept().get(email, {})
        salt = b64decode(kept["salt"]) if kept.get("salt") else secrets.token_bytes(32)
        if version == 2:
            password_key, user_hash = derive_v2(password, salt)
        else:
            password_key, user_hash = derive_v1(email, password)
        rsa = tuple(kept["rsa"]) if kept.get("rsa") else _new_rsa(rsa_bits)
        account = Account(
            email=email,
            user_handle=kept.get("user_handle") or b64encode(secrets.token_bytes(8)),
            master_key=b64decode(kept["master_key"]) if kept.get("master_key") else secrets.token_bytes(16),
            version=version,
            salt=salt,
            password_key=password_key,
            user_hash=user_hash,
            rsa=rsa,  # type: ignore[arg-type]
            quota_bytes=quota_bytes,
        )
        self.accounts[email] = account
        self._save()
        return account

    def by_email(self, email: str) -> Account | None:
        return self.accounts.get(str(email).lower())

    def by_session(self, sid: str | None) -> Account | None:
        email = self.sessions.get(sid or "")
        return self.accounts.get(email) if email else None

    def fake_prelogin(self, email: str) -> dict[str, Any]:
        """For unknown emails: a stable salt, so ``us0`` does not reveal who has an account."""
        return {"v": 2, "s": b64encode(hashlib.sha256(b"fake salt " + email.lower().encode()).digest())}

    def open_session(self, account: Account, kind: SessionKind) -> dict[str, Any]:
        sid, answer = account.login(new_session_bytes(), kind)
        self.sessions[sid] = account.email
        return answer

    def _kept(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        data: dict[str, dict[str, Any]] = json.loads(self.path.read_text())
        return data

    def _save(self) -> None:
        kept = self._kept()
        for email, account in self.accounts.items():
            kept[email] = {
                "user_handle": account.user_handle,
                "master_key": b64encode(account.master_key),
                "salt": b64encode(account.salt),
                "rsa": list(account.rsa) if account.rsa else None,
            }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps(kept, indent=1))
        os.replace(temp, self.path)


def _new_rsa(bits: int) -> tuple[int, int, int]:
    key = RSA.generate(bits)
    p, q = int(key.p), int(key.q)
    return p, q, pow(65537, -1, (p - 1) * (q - 1))
