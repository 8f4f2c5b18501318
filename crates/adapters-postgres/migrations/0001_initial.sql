-- The four tables of SPEC section 7, shared in shape and meaning with the SQLite adapter.
-- Times are milliseconds since the Unix epoch; iterations and attempt numbers are u32, so BIGINT.

CREATE TABLE attempts (
    run_id               TEXT    NOT NULL,
    node_id              TEXT    NOT NULL,
    iteration            BIGINT  NOT NULL,
    attempt              BIGINT  NOT NULL,
    state                TEXT    NOT NULL
        CHECK (state IN ('in-progress', 'finished', 'failed', 'cancelled')),
    owner                TEXT    NOT NULL,
    lease_expires_at_ms  BIGINT  NOT NULL,
    started_at_ms        BIGINT  NOT NULL,
    finished_at_ms       BIGINT,
    last_heartbeat_at_ms BIGINT,
    heartbeat            JSONB,
    error                JSONB,
    retryable            BOOLEAN,
    vcs                  TEXT,
    metadata             JSONB   NOT NULL,
    working_dir          TEXT,
    PRIMARY KEY (run_id, node_id, iteration, attempt)
);

-- The recovery sweep reads only in-progress attempts, by lease expiry.
CREATE INDEX attempts_recovery ON attempts (state, lease_expires_at_ms)
    WHERE state = 'in-progress';

-- A node never has two attempts in progress: begin_attempt checks it under the node's row lock,
-- and this index makes the database refuse it too.
CREATE UNIQUE INDEX attempts_one_in_progress ON attempts (run_id, node_id, iteration)
    WHERE state = 'in-progress';

CREATE TABLE nodes (
    run_id        TEXT   NOT NULL,
    node_id       TEXT   NOT NULL,
    iteration     BIGINT NOT NULL,
    state         TEXT   NOT NULL
        CHECK (state IN ('in-progress', 'finished', 'failed', 'cancelled')),
    last_attempt  BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    output_table  TEXT,
    label         TEXT,
    PRIMARY KEY (run_id, node_id, iteration)
);

CREATE INDEX nodes_updated ON nodes (updated_at_ms);

CREATE TABLE outputs (
    run_id        TEXT   NOT NULL,
    node_id       TEXT   NOT NULL,
    iteration     BIGINT NOT NULL,
    attempt       BIGINT NOT NULL,
    output        JSONB  NOT NULL,
    written_at_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, node_id, iteration)
);

CREATE TABLE events (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       TEXT   NOT NULL,
    node_id      TEXT   NOT NULL,
    iteration    BIGINT NOT NULL,
    attempt      BIGINT NOT NULL,
    type         TEXT   NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    -- The event's whole JSON form (stint_domain::Event), without seq.
    body         JSONB  NOT NULL
);

CREATE INDEX events_run_seq ON events (run_id, seq);
