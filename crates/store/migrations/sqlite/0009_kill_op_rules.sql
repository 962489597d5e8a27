-- Kill-op rules (issue 11): the vendor's automatic kills, per instance (at most 10, enforced by
-- the insert itself). The three lists are JSON arrays of strings; an empty array means "any".
-- `mode` is docplane's extension: 'kill' (default) or 'observe' (record only).
CREATE TABLE kill_op_rules (
    id              TEXT PRIMARY KEY,
    instance_id     TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    operation_types TEXT NOT NULL,
    namespaces      TEXT NOT NULL,
    client_ips      TEXT NOT NULL,
    plan_summary    TEXT NOT NULL,
    max_concurrency INTEGER NOT NULL,
    secs_running    INTEGER NOT NULL,
    node_type       TEXT NOT NULL,
    status          TEXT NOT NULL,
    mode            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX kill_op_rules_instance ON kill_op_rules(instance_id, created_at);
CREATE INDEX kill_op_rules_status ON kill_op_rules(status);

-- Enforcement leases: which replica enforces a node's rules, until when (unix ms). A replica
-- renews its leases every interval; another takes a lease over once it has expired.
CREATE TABLE enforcer_leases (
    node_id    TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
