-- Search over lectures (projections/moments.py): the moments a tutor can land on.
-- Built from the event log (Created, the embed step's StepCompleted, the queue's end)
-- and the embed step's stored chunks (video_embeddings); rebuilt from event 0.

CREATE TABLE IF NOT EXISTS search_lectures (
    queue_id   TEXT PRIMARY KEY,
    owner_id   TEXT NOT NULL,
    filename   TEXT,
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS search_lectures_owner ON search_lectures (owner_id, status);

-- One row a moment (a transcript chunk). The vector is little-endian float32 bytes.
CREATE TABLE IF NOT EXISTS search_moments (
    id            INTEGER PRIMARY KEY,
    queue_id      TEXT NOT NULL,
    chunk_index   INTEGER NOT NULL,
    owner_id      TEXT NOT NULL,
    start_seconds REAL NOT NULL,
    end_seconds   REAL NOT NULL,
    text          TEXT NOT NULL,
    server        TEXT,
    model         TEXT,
    dimension     INTEGER,
    embedding     BLOB,
    UNIQUE (queue_id, chunk_index)
);

-- Exact vector search reads one owner's vectors of one model in id order (keyset batches).
CREATE INDEX IF NOT EXISTS search_moments_space ON search_moments (owner_id, server, model, dimension, id);

-- Keyword index: FTS5 with Porter stemming; rowid = search_moments.id.
CREATE VIRTUAL TABLE IF NOT EXISTS search_moments_fts USING fts5 (
    text, tokenize = 'porter unicode61 remove_diacritics 2'
);
