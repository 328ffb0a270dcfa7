-- In-app notifications (projections/notifications.py): one row per notifiable event of a
-- queue (started, completed, failed, cancelled; progress when enabled), newest read first.
-- notification_queues remembers each queue's owner and file name (only Created carries them;
-- its first_step column, no longer read, is dropped by 008).
-- notification_deliveries (handlers/notifiers/) records every push attempt and its outcome.

CREATE TABLE IF NOT EXISTS notification_queues (
    queue_id   TEXT PRIMARY KEY,
    owner_id   TEXT NOT NULL,
    filename   TEXT,
    first_step TEXT
);

CREATE TABLE IF NOT EXISTS notifications (
    id         TEXT PRIMARY KEY,
    owner_id   TEXT NOT NULL,
    queue_id   TEXT NOT NULL,
    kind       TEXT NOT NULL
        CHECK (kind IN ('started', 'progress', 'completed', 'failed', 'cancelled')),
    message    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX IF NOT EXISTS notifications_owner
    ON notifications (owner_id, created_at DESC);

CREATE TABLE IF NOT EXISTS notification_deliveries (
    notification_id TEXT NOT NULL,
    channel         TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    owner_id        TEXT NOT NULL,
    queue_id        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('delivered', 'failed', 'skipped')),
    detail          TEXT,
    provider_id     TEXT,
    attempted_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (notification_id, channel, attempt)
);
