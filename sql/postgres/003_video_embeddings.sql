-- Embeddings of transcript chunks (handlers/embedding_store.py): one row per chunk of a
-- queue's transcript. Writing a queue's embeddings again replaces its rows. Vectors of
-- different models (and dimensions) are never compared: queries filter by model.

CREATE TABLE IF NOT EXISTS video_embeddings (
    queue_id      TEXT NOT NULL,
    chunk_index   INTEGER NOT NULL,
    start_seconds DOUBLE PRECISION NOT NULL,
    end_seconds   DOUBLE PRECISION NOT NULL,
    text          TEXT NOT NULL,
    model         TEXT NOT NULL,
    dimension     INTEGER NOT NULL CHECK (dimension > 0),
    server        TEXT NOT NULL,
    embedding     DOUBLE PRECISION[] NOT NULL CHECK (cardinality(embedding) = dimension),
    PRIMARY KEY (queue_id, chunk_index)
);
