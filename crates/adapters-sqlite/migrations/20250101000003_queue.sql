-- The durable queue: one row per task, and the limits of the queues that have one.
-- Times are milliseconds since the epoch; JSON is TEXT; booleans are 0/1.

-- AUTOINCREMENT so a task id is never reused, even after the newest tasks are pruned.
CREATE TABLE tasks (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    queue               TEXT    NOT NULL CHECK (queue <> ''),
    run_id              TEXT    NOT NULL CHECK (run_id <> ''),
    node_id             TEXT    NOT NULL CHECK (node_id <> ''),
    priority            INTEGER NOT NULL,
    run_at_ms           INTEGER NOT NULL,
    spec                TEXT    NOT NULL,
    unique_key          TEXT,
    state               TEXT    NOT NULL
        CHECK (state IN ('ready', 'running', 'finished', 'failed', 'cancelled')),
    claims              INTEGER NOT NULL DEFAULT 0,
    owner               TEXT,
    lease_expires_at_ms INTEGER,
    cancel_requested    INTEGER NOT NULL DEFAULT 0,
    retry_base          INTEGER NOT NULL DEFAULT 0,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    ended_at_ms         INTEGER,
    last_error          TEXT
);

-- At most one task that has not ended holds a unique key: enqueue inserts with
-- ON CONFLICT DO NOTHING and reads back the holder.
CREATE UNIQUE INDEX tasks_unique_live ON tasks (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('ready', 'running');

-- claim reads ready tasks of a queue in claim order.
CREATE INDEX tasks_claimable ON tasks (queue, priority DESC, run_at_ms, id)
    WHERE state = 'ready';

-- renew_claims (by owner), sweep_expired (by lease) and the per-queue running counts.
CREATE INDEX tasks_running ON tasks (owner, lease_expires_at_ms)
    WHERE state = 'running';
CREATE INDEX tasks_running_queue ON tasks (queue) WHERE state = 'running';

-- prune deletes the oldest ended tasks; cancel by run.
CREATE INDEX tasks_ended ON tasks (ended_at_ms) WHERE ended_at_ms IS NOT NULL;
CREATE INDEX tasks_run ON tasks (run_id);

CREATE TABLE queues (
    name        TEXT    PRIMARY KEY,
    max_running INTEGER
);
