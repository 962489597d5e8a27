-- Kill records as an append-only, per-project hash chain (see ARCHITECTURE.md, store).
-- An intent entry is committed before any killOp is sent; its outcome is a later entry of the
-- same record_id. Entries are never updated; retention prunes the oldest entries and moves the
-- head's base (base_seq, base_hash) so the rest still verifies.
CREATE TABLE kill_log (
    project_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    record_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    at         BIGINT NOT NULL,
    node_id    TEXT NOT NULL,
    principal  TEXT NOT NULL,
    access_key TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    body       TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    PRIMARY KEY (project_id, seq)
);
-- At most one intent and one outcome per record.
CREATE UNIQUE INDEX kill_log_record_kind ON kill_log(record_id, kind);
CREATE INDEX kill_log_kind_at ON kill_log(kind, at);

-- One row per project: the last entry appended (seq, hash), locked by every append.
CREATE TABLE kill_chain_heads (
    project_id TEXT PRIMARY KEY,
    seq        BIGINT NOT NULL,
    hash       TEXT NOT NULL,
    base_seq   BIGINT NOT NULL,
    base_hash  TEXT NOT NULL
);

-- The previous unchained audit table is replaced.
DROP TABLE kill_audit;
