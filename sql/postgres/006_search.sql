-- Search over lectures (projections/moments.py): the moments a tutor can land on.
-- Built from the event log (Created, the embed step's StepCompleted, the queue's end)
-- and the embed step's stored chunks (video_embeddings); rebuilt from event 0.
-- Where the pgvector extension is available, projections/moments.py adds a `vector`
-- column and one HNSW (cosine) index per dimension; otherwise search is exact.

CREATE TABLE IF NOT EXISTS search_lectures (
    queue_id   TEXT PRIMARY KEY,
    owner_id   TEXT NOT NULL,
    filename   TEXT,
    status     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX IF NOT EXISTS search_lectures_owner ON search_lectures (owner_id, status);

-- One row a moment (a transcript chunk). The vector is L2-normalised little-endian float32 bytes.
CREATE TABLE IF NOT EXISTS search_moments (
    id            BIGSERIAL PRIMARY KEY,
    queue_id      TEXT NOT NULL,
    chunk_index   INTEGER NOT NULL,
    owner_id      TEXT NOT NULL,
    start_seconds DOUBLE PRECISION NOT NULL,
    end_seconds   DOUBLE PRECISION NOT NULL,
    text          TEXT NOT NULL,
    server        TEXT,
    model         TEXT,
    dimension     INTEGER CHECK (dimension > 0),
    embedding     BYTEA CHECK (embedding IS NULL OR octet_length(embedding) = 4 * dimension),
    tsv           TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    UNIQUE (queue_id, chunk_index)
);

-- Exact vector search reads one owner's vectors of one model in id order (keyset batches).
CREATE INDEX IF NOT EXISTS search_moments_space ON search_moments (owner_id, server, model, dimension, id);

CREATE INDEX IF NOT EXISTS search_moments_tsv ON search_moments USING gin (tsv);
