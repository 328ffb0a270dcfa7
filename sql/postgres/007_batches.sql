-- Batches (api/routes/batches.py): several videos sent in one request. One row per file
-- part, in the order sent: the queue it started, or why it was refused. The queue's
-- Created event carries the batch id too (options.batch_id).
-- Written by the API (not a projection of the event log): rebuilding projections keeps them;
-- deleting a lecture removes its row.

CREATE TABLE IF NOT EXISTS video_processing_batch_items (
    batch_id   TEXT NOT NULL,
    position   INTEGER NOT NULL,
    owner_id   TEXT NOT NULL,
    filename   TEXT,
    queue_id   TEXT,
    error      TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (batch_id, position)
);

CREATE INDEX IF NOT EXISTS video_processing_batch_items_owner
    ON video_processing_batch_items (owner_id, batch_id);
