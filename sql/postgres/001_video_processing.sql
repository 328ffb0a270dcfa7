-- Read model of the VideoProcessing event log (Postgres, production).
-- Written only by projections/queue_status.py; read by the API.
-- Created in the schema named by DATABASE_URL's ?schema= (search_path is set per transaction).

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
    options             JSONB NOT NULL DEFAULT '{}',
    retries             INTEGER NOT NULL DEFAULT 0,
    version             INTEGER NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    started_at          TIMESTAMPTZ,
    finished_at         TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ NOT NULL
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
    duration_seconds DOUBLE PRECISION,
    outputs          JSONB NOT NULL DEFAULT '{}',
    started_at       TIMESTAMPTZ,
    completed_at     TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (queue_id, step)
);

CREATE OR REPLACE VIEW video_processing_queue_status AS
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
    COALESCE((
        SELECT json_agg(json_build_object(
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
            'outputs', s.outputs,
            'started_at', s.started_at,
            'completed_at', s.completed_at
        ) ORDER BY s.position)
        FROM video_processing_steps AS s
        WHERE s.queue_id = q.id
    ), '[]'::json) AS steps,
    q.options->>'filename' AS filename,
    -- every running step in pipeline order (steps run side by side); appended last, as
    -- CREATE OR REPLACE VIEW only adds columns at the end
    COALESCE((
        SELECT json_agg(r.step ORDER BY r.position)
        FROM video_processing_steps AS r
        WHERE r.queue_id = q.id AND r.status = 'running'
    ), '[]'::json) AS running_steps,
    -- what was uploaded: 'audio' for an audio recording (no compress step, or a "video" whose
    -- compress step found sound without picture: outputs media 'audio'), else 'video'
    COALESCE(q.options->>'media', (
        SELECT c.outputs->>'media' FROM video_processing_steps AS c
        WHERE c.queue_id = q.id AND c.step = 'compress'
    ), 'video') AS media
FROM video_processing_queue AS q;
