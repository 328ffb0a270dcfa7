"""MEGA's JSON-RPC commands, as ``POST /cs`` carries them.

A request is a JSON array of commands (``{"a": <name>, ...}``); the answer is
an array with one result each, a negative number for a failed command. A
request-level failure (bad session, congestion) is a bare number instead of an
array. Commands served: ``us0`` (prelogin), ``us`` (login), ``ug`` (user),
``uq`` (quota), ``f`` (list nodes), ``u`` (upload URL), ``p`` (put nodes:
folders, completed uploads), ``g`` (download URL), ``d`` (delete), ``m``
(move), ``a`` (set attributes). Others answer ``-2`` EARGS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from local.mega.accounts import ENOENT, ESID, Account, AccountBook
from local.mega.drive import EARGS, Drive
from local.mega.settings import Settings

Result = Any
"""A command's JSON result, or a negative MEGA error number."""


class Commands:
    def __init__(self, settings: Settings, accounts: AccountBook, drive: Drive) -> None:
        self.settings = settings
        self.accounts = accounts
        self.drive = drive

    def run(self, sid: str | None, commands: list[Any], base_url: str) -> list[Result] | int:
        """Every command of one request, or a request-level error number."""
        account = self.accounts.by_session(sid)
        if sid and account is None:
            return ESID
        results = []
        with self.drive.lock:
            for command in commands:
                results.append(self._one(account, command, base_url))
        return results

    def _one(self, account: Account | None, command: Any, base_url: str) -> Result:
        if not isinstance(command, dict):
            return EARGS
        name = command.get("a")
        if name == "us0":
            return self._prelogin(command)
        if name == "us":
            return self._login(command)
        if account is None:
            return ESID if name in _HANDLERS else EARGS
        handler = _HANDLERS.get(str(name))
        if handler is None:
            return EARGS
        return handler(self, account, command, base_url)

    def _prelogin(self, command: dict[str, Any]) -> Result:
        account = self.accounts.by_email(str(command.get("user", "")))
        if account is None:
            return self.accounts.fake_prelogin(str(command.get("user", "")))
        return account.prelogin()

    def _login(self, command: dict[str, Any]) -> Result:
        account = self.accounts.by_email(str(command.get("user", "")))
        if account is None or command.get("uh") != account.user_hash:
            return ENOENT
        self.drive.ensure_roots(account.user_handle)
        return self.accounts.open_session(account, self.settings.session)

    def user(self, account: Account, command: dict[str, Any], base_url: str) -> Result:
        return {"u": account.user_handle, "email": account.email, "s": 0, "k": "", "since": 0}

    def quota(self, account: Account, command: dict[str, Any], base_url: str) -> Result:
        total = self.settings.quota_bytes if self.settings.quota_bytes is not None else 20 * 1024**3
        return {"cstrg": self.drive.used_bytes(account.user_handle), "mstrg": total, "mxfer": total, "caxfer": 0}

    def files(self, account: Account, command: dict[str, Any], base_url: str) -> Result:
        return {
            "f": self.drive.listing(account.user_handle),
            "ok": [],
            "s": [],
            "u": [{"u": account.user_handle, "c": 2, "m": account.email}],
        }

    def upload(self, account: Account, command: dict[str, Any], base_url: str) -> Result:
        token = self.drive.start_upload(account.user_handle, command.get("s"), account.quota_bytes)
        if isinstance(token, int):
            return token
        return {"p": f"{base_url}/ul/{token}"}

    def put_nodes(self, account: Account, command: dict[str, Any], base_url: str) -> Result:
        created = self.drive.add(account.user_handle, str(command.get("t", "")), command.get("n"))  # type: ignore[arg-type]
        if isinstance(created, int):
            return created
        return {"f": created}

    def download(self, account: Account, command: dict[str, Any], base_url: str) -> Result:
        if "n" not in command:
            return ENOENT  # public handles (``p``) are not served
        started = self.drive.start_download(account.user_handle, str(command["n"]))
        if isinstance(started, int):
            return started
        token, node = started
        answer: dict[str, Any] = {"s": node.s, "at": node.a, "msd": 1}
        if command.get("g"):
            answer["g"] = f"{base_url}/dl/{token}"
        return answer

    def delete(self, account: Account, command: dict[str, Any], base_url: str) -> Result:
        return self.drive.remove(account.user_handle, str(command.get("n", "")))

    def move(self, account: Account, command: dict[str, Any], base_url: str) -> Result:
        return self.drive.move(account.user_handle, str(command.get("n", "")), str(command.get("t", "")))

    def attributes(self, account: Account, command: dict[str, Any], base_url: str) -> Result:
        if not isinstance(command.get("attr"), str):
            return EARGS
        return self.drive.set_attributes(
            account.user_handle, str(command.get("n", "")), command["attr"], command.get("key")
        )


_HANDLERS: dict[str, Callable[[Commands, Account, dict[str, Any], str], Result]] = {
    "ug": Commands.user,
    "uq": Commands.quota,
    "f": Commands.files,
    "u": Commands.upload,
    "p": Commands.put_nodes,
    "g": Commands.download,
    "d": Commands.delete,
    "m": Commands.move,
    "a": Commands.attributes,
}
