"""Delivering messages to their destinations: the worker inside the server process.

Covers the delivery half of the protocol: the signed request (method, raw
body, ``Upstash-Signature``, ``Upstash-Message-Id``, ``Upstash-Retried``,
``User-Agent: Upstash-QStash``, ``Upstash-Caller-Ip``, forwarded headers), the
outcome (2xx success; 489 with ``Upstash-NonRetryable-Error: true`` straight to
the DLQ; anything else, a refused connection or a timeout retried after
``Retry-After`` / ``Upstash-Retry-Delay`` / the default backoff; exhausted
retries to the DLQ) and the success and failure callbacks.

Deliveries run concurrently, at most ``settings.concurrency`` at a time, each
bounded by its ``Upstash-Timeout`` or ``settings.default_timeout_s``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone

import httpx

from local.qstash.backoff import next_delay, parse_retry_after
from local.qstash.callbacks import callback_body, callback_message
from local.qstash.expressions import ExpressionError, RetryDelayExpression
from local.qstash.message import DeadLetter, Kind, Message, new_id
from local.qstash.publication import canonical_header
from local.qstash.scheduling import fire_due
from local.qstash.settings import Settings
from local.qstash.signing import sign
from local.qstash.store import MessageStore

log = logging.getLogger(__name__)

NON_RETRYABLE_STATUS = 489
_DROPPED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one attempt got back; ``status`` 0 when there was no HTTP answer."""

    status: int
    headers: dict[str, list[str]]
    body: bytes
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300

    @property
    def non_retryable(self) -> bool:
        values = self.headers.get("Upstash-Nonretryable-Error", [])
        return self.status == NON_RETRYABLE_STATUS and any(v.strip().lower() == "true" for v in values)

    def describe(self) -> str:
        return self.error or f"HTTP {self.status}"


def delivery_headers(message: Message, signature: str) -> dict[str, str]:
    """Headers sent to the destination: the forwarded ones, then QStash's own."""
    headers = {k: v for k, v in message.headers.items() if k.lower() not in _DROPPED_HEADERS}
    headers.update(
        {
            "Upstash-Signature": signature,
            "Upstash-Message-Id": message.id,
            "Upstash-Retried": str(message.retried),
            "User-Agent": "Upstash-QStash",
        }
    )
    if message.caller_ip:
        headers["Upstash-Caller-Ip"] = message.caller_ip
    if message.schedule_id:
        headers["Upstash-Schedule-Id"] = message.schedule_id
    return headers


class DeliveryWorker:
    """Claims due messages from the store and delivers them concurrently."""

    def __init__(
        self,
        store: MessageStore,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        recovered = self._store.recover_in_flight()
        if recovered:
            log.info("re-queued %d deliveries interrupted by a previous stop", recovered)
        self._client = httpx.AsyncClient(timeout=None, follow_redirects=False)
        self._loop_task = asyncio.create_task(self._run(), name="qstash-delivery-loop")

    async def stop(self) -> None:
        """Stop claiming; let attempts in flight finish within ``settings.shutdown_grace_s``
        and record their outcomes; abandon the rest (they stay due); close the client.

        A clean stop (SIGTERM) so delivers nothing twice: an attempt cut off here
        would be delivered again by the next process although its destination
        may have done the work. Only what outlasts the grace period, or a crash,
        is delivered again (at-least-once).
        """
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._in_flight:
            log.info("stopping: waiting up to %g s for %d deliveries in flight",
                     self._settings.shutdown_grace_s, len(self._in_flight))
            await asyncio.wait(set(self._in_flight), timeout=self._settings.shutdown_grace_s)
        abandoned = list(self._in_flight)
        for task in abandoned:
            task.cancel()
        await asyncio.gather(*abandoned, return_exceptions=True)
        if abandoned:
            log.warning("stopping: abandoned %d deliveries in flight; they are delivered again after a restart",
                        len(abandoned))
        self._store.recover_in_flight()
        if self._client is not None:
            await self._client.aclose()

    def wake(self) -> None:
        """Tell the worker the store changed (a publish or a DLQ retry)."""
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                fire_due(self._store, self._settings, self._clock())
            except Exception:  # a broken schedule must not stop deliveries
                log.exception("firing schedules failed")
            free = self._settings.concurrency - len(self._in_flight)
            for message in self._store.claim_due(self._clock(), free):
                task = asyncio.create_task(self._deliver(message), name=f"deliver-{message.id}")
                self._in_flight.add(task)
                task.add_done_callback(self._finished)
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._sleep_time())
            except TimeoutError:
                pass

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wakeup.set()

    def _sleep_time(self) -> float:
        poll = self._settings.poll_interval_s
        if len(self._in_flight) >= self._settings.concurrency:
            return poll
        now = self._clock()
        dues = [when for when in (self._store.next_due(after=now), self._store.next_schedule_fire()) if when is not None]
        if not dues:
            return poll
        return min(poll, max(0.0, min(dues) - now))

    async def _deliver(self, message: Message) -> None:
        try:
            outcome = await self._attempt(message)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug must not leave the message stuck
            log.exception("delivery of %s failed unexpectedly", message.id)
            outcome = Outcome(0, {}, b"", error=f"internal error: {error!r}")
        self._record(message, outcome)

    async def _attempt(self, message: Message) -> Outcome:
        assert self._client is not None
        current_key, _ = self._store.signing_keys(
            self._settings.current_signing_key.get_secret_value(),
            self._settings.next_signing_key.get_secret_value(),
        )
        signature = sign(
            url=message.url,
            body=message.body,
            key=current_key,
            now=self._clock(),
        )
        timeout = message.timeout_s or self._settings.default_timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await self._send(message, delivery_headers(message, signature))
        except TimeoutError:
            return Outcome(0, {}, b"", error=f"timed out after {timeout:g} s")
        except httpx.HTTPError as error:
            return Outcome(0, {}, b"", error=f"{type(error).__name__}: {error}")

    async def _send(self, message: Message, headers: dict[str, str]) -> Outcome:
        assert self._client is not None
        limit = self._settings.max_response_bytes
        request = self._client.build_request(
            message.method, message.url, content=message.body, headers=headers
        )
        response = await self._client.send(request, stream=True)
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk[: limit - len(body)])
                if len(body) >= limit:
                    break
        finally:
            await response.aclose()
        response_headers: dict[str, list[str]] = {}
        for name, value in response.headers.multi_items():
            response_headers.setdefault(canonical_header(name), []).append(value)
        return Outcome(response.status_code, response_headers, bytes(body))

    def _record(self, message: Message, outcome: Outcome) -> None:
        attempt = f"{message.kind.value} {message.id} {message.method} {message.url} (retried {message.retried})"
        if outcome.succeeded:
            log.info("delivered %s: %s", attempt, outcome.describe())
            self._store.mark_delivered(message.id, self._success_callback(message, outcome), outcome.status)
        elif outcome.non_retryable or message.retried >= message.max_retries:
            reason = "non-retryable" if outcome.non_retryable else "retries exhausted"
            log.warning("dead-lettered %s: %s, %s", attempt, outcome.describe(), reason)
            self._bury(message, outcome)
        else:
            delay = self._retry_delay(message, outcome)
            log.info("failed %s: %s; next attempt in %.3f s", attempt, outcome.describe(), delay)
            self._store.reschedule(
                message.id,
                message.retried + 1,
                self._clock() + delay,
                error=outcome.describe(),
                response_status=outcome.status or None,
            )

    def _retry_delay(self, message: Message, outcome: Outcome) -> float:
        retry_after = None
        values = outcome.headers.get("Retry-After")
        if values:
            retry_after = parse_retry_after(values[0], datetime.now(timezone.utc))
        expression = None
        if message.retry_delay is not None:
            try:
                expression = RetryDelayExpression(message.retry_delay)
            except ExpressionError:
                expression = None
        return next_delay(
            retried=message.retried,
            retry_after=retry_after,
            expression=expression,
            scale=self._settings.backoff_scale,
        )

    def _bury(self, message: Message, outcome: Outcome) -> None:
        body = outcome.body if outcome.status else (outcome.error or "").encode()
        letter = DeadLetter(
            dlq_id=new_id("dlq"),
            message=message,
            response_status=outcome.status,
            response_headers=outcome.headers,
            response_body=body,
            created_at=self._clock(),
        )
        follow_up = None
        if message.kind is Kind.MESSAGE and message.failure_callback:
            follow_up = self._callback(
                message,
                message.failure_callback,
                message.failure_callback_headers,
                outcome,
                letter.dlq_id,
                body,
            )
        self._store.bury(letter, follow_up, error=outcome.describe())

    def _success_callback(self, message: Message, outcome: Outcome) -> Message | None:
        if message.kind is not Kind.MESSAGE or not message.callback:
            return None
        return self._callback(message, message.callback, message.callback_headers, outcome, None, outcome.body)

    def _callback(
        self,
        message: Message,
        url: str,
        headers: dict[str, str],
        outcome: Outcome,
        dlq_id: str | None,
        response_body: bytes,
    ) -> Message:
        body = callback_body(
            message,
            status=outcome.status,
            response_headers=outcome.headers,
            response_body=response_body,
            dlq_id=dlq_id,
        )
        callback = callback_message(
            message_id=new_id("msg"),
            url=url,
            headers=headers,
            body=body,
            max_retries=self._settings.default_retries,
            now=self._clock(),
        )
        if message.queue is not None:  # the queue's next message waits for the callback
            callback = dataclasses.replace(callback, queue=message.queue, queue_seq=message.queue_seq)
        self.wake()
        return callback
