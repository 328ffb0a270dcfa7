-- Step messages the dispatcher published to QStash (handlers/dispatcher.py): one row per
-- (queue, step, attempt), so a replayed log never publishes an attempt twice and
-- Cancelled can cancel what is still pending.

CREATE TABLE IF NOT EXISTS video_processing_messages (
    queue_id      TEXT NOT NULL,
    step          TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    message_id    TEXT NOT NULL,
    delay_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
    status        TEXT NOT NULL CHECK (status IN ('published', 'cancelled')),
    published_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (queue_id, step, attempt)
);
