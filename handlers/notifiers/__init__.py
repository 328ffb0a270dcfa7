"""Push notifications to a tutor's devices: one protocol, OneSignal behind it.

The in-app notifications are a projection (``projections/notifications.py``);
pushes are side effects, sent by :class:`handlers.notifiers.push.PushNotifier`,
a follower of the event log that records every attempt and its outcome and
never fails a queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from handlers.errors import PermanentError, TransientError


@dataclass(frozen=True)
class PushMessage:
    """One push to one user (by the external user id the frontend logged in to OneSignal)."""

    external_user_id: str
    heading: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PushReceipt:
    provider_id: str | None
    detail: str = ""


class Notifier(Protocol):
    """Sends pushes. Raises ``TransientError`` (try again) or ``PermanentError``."""

    name: str

    def send(self, message: PushMessage) -> PushReceipt: ...


class PushFailed(TransientError):
    """The push service is unreachable or overloaded (5xx, 429, timeout)."""


class PushRefused(PermanentError):
    """The push service refused the message (bad key, bad app id, bad request)."""
