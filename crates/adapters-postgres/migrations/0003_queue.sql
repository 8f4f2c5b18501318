-- The durable queue, shared in shape and meaning with the SQLite adapter: one row per task, and
-- the limits of the queues that have one. Times are milliseconds since the Unix epoch.

CREATE TABLE tasks (
    id                  BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue               TEXT    NOT NULL CHECK (queue <> ''),
    run_id              TEXT    NOT NULL CHECK (run_id <> ''),
    node_id             TEXT    NOT NULL CHECK (node_id <> ''),
    priority            INTEGER NOT NULL,
    run_at_ms           BIGINT  NOT NULL,
    spec                JSONB   NOT NULL,
    unique_key          TEXT,
    state               TEXT    NOT NULL
        CHECK (state IN ('ready', 'running', 'finished', 'failed', 'cancelled')),
    claims              BIGINT  NOT NULL DEFAULT 0,
    owner               TEXT,
    lease_expires_at_ms BIGINT,
    cancel_requested    BOOLEAN NOT NULL DEFAULT FALSE,
    retry_base          BIGINT  NOT NULL DEFAULT 0,
    created_at_ms       BIGINT  NOT NULL,
    updated_at_ms       BIGINT  NOT NULL,
    ended_at_ms         BIGINT,
    last_error          JSONB
);

-- At most one task that has not ended holds a unique key: enqueue inserts with
-- ON CONFLICT DO NOTHING (which waits for a racing inserter's commit) and reads back the holder.
CREATE UNIQUE INDEX tasks_unique_live ON tasks (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('ready', 'running');

-- claim reads ready tasks of a queue in claim order.
CREATE INDEX tasks_claimable ON tasks (queue, priority DESC, run_at_ms, id)
    WHERE state = 'ready';

-- renew_claims (by owner), sweep_expired (by lease) and the per-queue running counts.
CREATE INDEX tasks_running ON tasks (owner, lease_expires_at_ms) WHERE state = 'running';
CREATE INDEX tasks_running_queue ON tasks (queue) WHERE state = 'running';

-- prune deletes the oldest ended tasks; cancel by run.
CREATE INDEX tasks_ended ON tasks (ended_at_ms) WHERE ended_at_ms IS NOT NULL;
CREATE INDEX tasks_run ON tasks (run_id);

-- A claim from a queue with a limit locks the queue's row, so that counting its running tasks
-- and claiming up to the limit cannot interleave with another claimer's.
CREATE TABLE queues (
    name        TEXT   PRIMARY KEY,
    max_running BIGINT
);
