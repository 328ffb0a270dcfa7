"""The message bus that carries step messages: QStash, through its official SDK.

Production points ``QSTASH_URL`` at Upstash; the embedded default at the local
QStash-compatible server (``local/qstash``). Same SDK, same HTTP API.
A publish may carry flow control (:mod:`handlers.flow_control`): the SDK's
``flow_control`` argument, sent as ``Upstash-Flow-Control-Key`` and
``Upstash-Flow-Control-Value: parallelism=N``, which Upstash and the local
server both honour. It may also carry a failure callback (the SDK's
``failure_callback``, sent as ``Upstash-Failure-Callback``): the URL QStash
POSTs to, signed like a delivery, when it dead-letters the message.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from qstash import QStash
from qstash.errors import QStashError
from qstash.message import FlowControl

from handlers.flow_control import FlowLimit

logger = logging.getLogger(__name__)


class MessageBus(Protocol):
    def publish(
        self,
        url: str,
        body: dict[str, Any],
        *,
        deduplication_id: str,
        delay_seconds: float,
        flow_control: FlowLimit | None = None,
        failure_callback: str | None = None,
    ) -> str:
        """Publish ``body`` to ``url`` (delivered within ``flow_control``'s limits); return the message id.

        ``failure_callback``: where QStash reports the message once it gives up delivering it."""

    def cancel(self, message_id: str) -> bool:
        """Cancel a pending message; False when it is no longer pending."""


class QStashBus:
    """Publishes with deduplication ids, delays and flow control; cancels pending messages."""

    def __init__(
        self,
        token: str,
        base_url: str | None = None,
        *,
        retries: int = 3,
        retry_delay: str | None = None,
        timeout_seconds: int | None = None,
    ) -> None:
        self.client = QStash(token, base_url=base_url)
        self.retries = retries
        self.retry_delay = retry_delay
        self.timeout_seconds = timeout_seconds

    def publish(
        self,
        url: str,
        body: dict[str, Any],
        *,
        deduplication_id: str,
        delay_seconds: float,
        flow_control: FlowLimit | None = None,
        failure_callback: str | None = None,
    ) -> str:
        response = self.client.message.publish_json(
            url=url,
            body=body,
            deduplication_id=deduplication_id,
            delay=f"{max(0, round(delay_seconds))}s" if delay_seconds > 0 else None,
            retries=self.retries,
            retry_delay=self.retry_delay,
            timeout=f"{self.timeout_seconds}s" if self.timeout_seconds else None,
            label="vidpipe",
            failure_callback=failure_callback,
            flow_control=None if flow_control is None else FlowControl(
                key=flow_control.key, parallelism=flow_control.parallelism
            ),
        )
        return response.message_id  # type: ignore[union-attr]

    def close(self) -> None:
        self.client.http._client.close()  # noqa: SLF001 - the SDK has no close()

    def cancel(self, message_id: str) -> bool:
        try:
            self.client.message.cancel(message_id)
        except QStashError as error:
            logger.info("message %s not cancelled (%s): already delivered or gone", message_id, error)
            return False
        return True
