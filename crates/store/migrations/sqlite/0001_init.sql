-- docplane metadata schema, SQLite flavour. Timestamps are unix milliseconds (INTEGER).
CREATE TABLE domains (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    enabled     BOOLEAN NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    domain_id   TEXT NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (domain_id, name)
);
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    domain_id       TEXT NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL,
    is_domain_admin BOOLEAN NOT NULL,
    token_epoch     INTEGER NOT NULL,
    description     TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (domain_id, name)
);
CREATE TABLE groups (
    id          TEXT PRIMARY KEY,
    domain_id   TEXT NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (domain_id, name)
);
CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members(user_id);
CREATE TABLE roles (
    id           TEXT PRIMARY KEY,
    domain_id    TEXT NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    display_name TEXT NOT NULL,
    description  TEXT NOT NULL,
    role_type    TEXT NOT NULL,
    policy       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE TABLE grants (
    scope_id TEXT NOT NULL,
    group_id TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    role_id  TEXT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    PRIMARY KEY (scope_id, group_id, role_id)
);
CREATE INDEX grants_group ON grants(group_id);
CREATE TABLE credentials (
    access_key  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    secret_enc  BLOB NOT NULL,
    status      TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX credentials_user ON credentials(user_id);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE changes (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind      TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    at        INTEGER NOT NULL
);
CREATE TABLE instances (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL,
    name              TEXT NOT NULL,
    mode              TEXT NOT NULL,
    status            TEXT NOT NULL,
    datastore_version TEXT NOT NULL,
    port              INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX instances_project ON instances(project_id, created_at);
CREATE TABLE instance_groups (
    id          TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    group_type  TEXT NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL
);
CREATE INDEX instance_groups_instance ON instance_groups(instance_id);
CREATE TABLE nodes (
    id              TEXT PRIMARY KEY,
    instance_id     TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    group_id        TEXT NOT NULL REFERENCES instance_groups(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,
    status          TEXT NOT NULL,
    address         TEXT NOT NULL,
    credentials_enc BLOB,
    version         TEXT NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX nodes_instance ON nodes(instance_id);
CREATE TABLE kill_audit (
    id             TEXT PRIMARY KEY,
    at             INTEGER NOT NULL,
    project_id     TEXT NOT NULL,
    instance_id    TEXT NOT NULL,
    node_id        TEXT NOT NULL,
    principal_id   TEXT NOT NULL,
    principal_name TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    session_ids    TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    detail         TEXT NOT NULL
);
CREATE INDEX kill_audit_project ON kill_audit(project_id, at);
