"""Cron schedules firing: each firing publishes the schedule's stored request again.

A schedule keeps the publish request it was created with (destination, the
``Upstash-*`` and forwarded headers, body), so every firing builds its message
exactly as ``POST /v2/publish`` would (delay, retries, callbacks, flow control,
label, and its queue if ``Upstash-Queue-Name`` was given), tagged with the
schedule's id. The next fire time is stored with the message in one
transaction, so a restart neither loses nor repeats a firing; a firing missed
while the server was down happens once at start, then the cron resumes from
now (no catch-up of every missed slot).
"""

from __future__ import annotations

import dataclasses
import logging

from local.qstash.cron import parse_cron
from local.qstash.message import Message, Schedule, new_id
from local.qstash.publication import PublishError, parse_publication
from local.qstash.settings import Settings
from local.qstash.store import MessageStore

log = logging.getLogger(__name__)


def scheduled_message(schedule: Schedule, settings: Settings, now: float) -> Message:
    """The message one firing of ``schedule`` publishes (``PublishError`` if it cannot)."""
    publication = parse_publication(
        destination=schedule.destination,
        headers=schedule.headers,
        body=schedule.body,
        caller_ip=schedule.caller_ip,
        settings=settings,
        now=now,
        message_id=new_id("msg"),
        queue=schedule.queue,
    )
    return dataclasses.replace(publication.message, schedule_id=schedule.id)


def fire_due(store: MessageStore, settings: Settings, now: float) -> int:
    """Fire every due schedule once; how many messages were published."""
    published = 0
    for schedule in store.due_schedules(now):
        next_fire = parse_cron(schedule.cron).next_after(now)
        try:
            message: Message | None = scheduled_message(schedule, settings, now)
            error = None
        except PublishError as failure:
            message, error = None, failure.message
            log.warning("schedule %s could not publish: %s", schedule.id, error)
        if store.fire_schedule(schedule, message, next_fire, now, error) and message is not None:
            published += 1
            log.info("schedule %s published %s to %s", schedule.id, message.id, message.url)
    return published
