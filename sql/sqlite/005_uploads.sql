-- Uploads the API accepted (api/uploads.py): which queue processes which stored file,
-- with the file's SHA-256 so the same video uploaded again by the same tutor reuses its
-- queue; and the Idempotency-Key of each upload request, per owner.
-- Written by the API (not a projection of the event log): rebuilding projections keeps them.

CREATE TABLE IF NOT EXISTS video_processing_uploads (
    queue_id      TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL,
    attachment_id TEXT NOT NULL,
    sha256        TEXT,
    size_bytes    INTEGER,
    filename      TEXT,
    created_at    TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS video_processing_uploads_content
    ON video_processing_uploads (owner_id, sha256);

CREATE TABLE IF NOT EXISTS video_processing_idempotency (
    owner_id        TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    claim           TEXT NOT NULL,
    queue_id        TEXT,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (owner_id, idempotency_key)
);
