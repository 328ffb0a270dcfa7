-- Embeddings of transcript chunks (handlers/embedding_store.py): one row per chunk of a
-- queue's transcript. Writing a queue's embeddings again replaces its rows. Vectors of
-- different models (and dimensions) are never compared: queries filter by model.

CREATE TABLE IF NOT EXISTS video_embeddings (
    queue_id      TEXT NOT NULL,
    chunk_index   INTEGER NOT NULL,
    start_seconds REAL NOT NULL,
    end_seconds   REAL NOT NULL,
    text          TEXT NOT NULL,
    model         TEXT NOT NULL,
    dimension     INTEGER NOT NULL,
    server        TEXT NOT NULL,
    embedding     TEXT NOT NULL,
    PRIMARY KEY (queue_id, chunk_index)
);
