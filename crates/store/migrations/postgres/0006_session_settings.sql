-- Per-instance settings of the session service (issue 9): the privacy placeholder and the
-- safety rails. An instance without a row has the defaults (nothing redacted, nothing
-- protected); the row goes with its instance. The two lists are JSON arrays of strings.
CREATE TABLE session_settings (
    instance_id         TEXT PRIMARY KEY REFERENCES instances(id) ON DELETE CASCADE,
    redact_operations   BOOLEAN NOT NULL,
    protected_users     TEXT NOT NULL,
    protected_app_names TEXT NOT NULL,
    updated_at          BIGINT NOT NULL,
    updated_by          TEXT NOT NULL
);
