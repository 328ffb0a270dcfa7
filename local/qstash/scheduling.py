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
from local.qstash.fanout import publications
from local.qstash.message import Message, Schedule
from local.qstash.publication import PublishError
from local.qstash.settings import Settings
from local.qstash.store import MessageStore

log = logging.getLogger(__name__)


def scheduled_messages(schedule: Schedule, store: MessageStore, settings: Settings, now: float) -> list[Message]:
    """The messages one firing of ``schedule`` publishes (one per endpoint for a URL group);
    ``PublishError`` if it cannot."""
    created = publications(
        destination=schedule.destination,
        headers=schedule.headers,
        body=schedule.body,
        caller_ip=schedule.caller_ip,
        settings=settings,
        now=now,
        queue=schedule.queue,
        endpoints=lambda group: next((g.endpoints for g in store.url_groups(group)), None),
    )
    return [dataclasses.replace(publication.message, schedule_id=schedule.id) for publication in created]


def fire_due(store: MessageStore, settings: Settings, now: float) -> int:
    """Fire every due schedule once; how many messages were published."""
    published = 0
    for schedule in store.due_schedules(now):
        next_fire = parse_cron(schedule.cron).next_after(now)
        try:
            messages = scheduled_messages(schedule, store, settings, now)
            error = None
        except PublishError as failure:
            messages, error = [], failure.message
            log.warning("schedule %s could not publish: %s", schedule.id, error)
        if store.fire_schedule(schedule, messages, next_fire, now, error):
            published += len(messages)
            for message in messages:
                log.info("schedule %s published %s to %s", schedule.id, message.id, message.url)
    return published
