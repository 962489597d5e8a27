-- One-statement appends (SqliteStore::append_kill_entry_guarded): inserting a kill_log entry
-- moves its chain's head forward (never back: an entry written into a gap, by restore or
-- forgery, leaves the head where it is), creating the head of a new chain from the genesis.
CREATE TRIGGER kill_log_moves_head AFTER INSERT ON kill_log
BEGIN
    INSERT INTO kill_chain_heads (project_id, seq, hash, base_seq, base_hash)
    VALUES (NEW.project_id, NEW.seq, NEW.hash, 0,
            '0000000000000000000000000000000000000000000000000000000000000000')
    ON CONFLICT (project_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash
        WHERE excluded.seq > kill_chain_heads.seq;
END;
