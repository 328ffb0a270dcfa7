-- Read model of the VideoProcessing event log (SQLite, the embedded default).
-- Written only by projections/queue_status.py; read by the API.
-- Timestamps are ISO-8601 text in UTC; JSON columns are text.

CREATE TABLE IF NOT EXISTS video_processing_queue (
    id                  TEXT PRIMARY KEY,
    owner_id            TEXT NOT NULL,
    attachment_id       TEXT NOT NULL,
    status              TEXT NOT NULL
        CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    current_step        TEXT,
    progress_percentage INTEGER NOT NULL DEFAULT 0
        CHECK (progress_percentage BETWEEN 0 AND 100),
    error               TEXT,
    options             TEXT NOT NULL DEFAULT '{}',
    retries             INTEGER NOT NULL DEFAULT 0,
    version             INTEGER NOT NULL,
    created_at          TEXT NOT NULL,
    started_at          TEXT,
    finished_at         TEXT,
    updated_at          TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS video_processing_queue_owner
    ON video_processing_queue (owner_id, created_at DESC);

CREATE TABLE IF NOT EXISTS video_processing_steps (
    queue_id         TEXT NOT NULL REFERENCES video_processing_queue (id) ON DELETE CASCADE,
    step             TEXT NOT NULL,
    position         INTEGER NOT NULL,
    status           TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'retrying', 'completed', 'failed', 'cancelled')),
    progress         INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    attempts         INTEGER NOT NULL DEFAULT 0,
    retries          INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    provider         TEXT,
    model            TEXT,
    duration_seconds REAL,
    outputs          TEXT NOT NULL DEFAULT '{}',
    started_at       TEXT,
    completed_at     TEXT,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (queue_id, step)
);

-- Dropped and created again, so a database made before a column was added gets it.
DROP VIEW IF EXISTS video_processing_queue_status;

CREATE VIEW video_processing_queue_status AS
SELECT
    q.id AS queue_id,
    q.owner_id,
    q.attachment_id,
    q.status,
    q.progress_percentage,
    q.current_step,
    q.error,
    q.retries,
    q.version,
    q.created_at,
    q.started_at,
    q.finished_at,
    q.updated_at,
    (
        SELECT json_group_array(json_object(
            'step', s.step,
            'position', s.position,
            'status', s.status,
            'progress', s.progress,
            'attempts', s.attempts,
            'retries', s.retries,
            'last_error', s.last_error,
            'provider', s.provider,
            'model', s.model,
            'duration_seconds', s.duration_seconds,
            'outputs', json(s.outputs),
            'started_at', s.started_at,
            'completed_at', s.completed_at
        ))
        FROM (SELECT * FROM video_processing_steps WHERE queue_id = q.id ORDER BY position) AS s
    ) AS steps,
    json_extract(q.options, '$.filename') AS filename,
    (
        SELECT json_group_array(r.step)
        FROM (SELECT step FROM video_processing_steps
              WHERE queue_id = q.id AND status = 'running' ORDER BY position) AS r
    ) AS running_steps,
    -- what was uploaded: 'audio' also for a "video" whose compress step found sound without picture
    COALESCE(json_extract(q.options, '$.media'), (
        SELECT json_extract(c.outputs, '$.media') FROM video_processing_steps AS c
        WHERE c.queue_id = q.id AND c.step = 'compress'
    ), 'video') AS media
FROM video_processing_queue AS q;
