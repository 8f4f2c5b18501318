-- The four tables of stint (SPEC section 7). Times are milliseconds since the epoch; JSON is TEXT.

CREATE TABLE attempts (
    run_id               TEXT    NOT NULL,
    node_id              TEXT    NOT NULL,
    iteration            INTEGER NOT NULL,
    attempt              INTEGER NOT NULL,
    state                TEXT    NOT NULL
        CHECK (state IN ('in-progress', 'finished', 'failed', 'cancelled')),
    owner                TEXT    NOT NULL,
    lease_expires_at_ms  INTEGER NOT NULL,
    started_at_ms        INTEGER NOT NULL,
    finished_at_ms       INTEGER,
    last_heartbeat_at_ms INTEGER,
    heartbeat            TEXT,
    error                TEXT,
    retryable            INTEGER,
    vcs                  TEXT,
    metadata             TEXT    NOT NULL,
    working_dir          TEXT,
    PRIMARY KEY (run_id, node_id, iteration, attempt)
);

-- The recovery sweep only ever looks at attempts in progress.
CREATE INDEX attempts_in_progress_lease
    ON attempts (state, lease_expires_at_ms)
    WHERE state = 'in-progress';

CREATE TABLE nodes (
    run_id        TEXT    NOT NULL,
    node_id       TEXT    NOT NULL,
    iteration     INTEGER NOT NULL,
    state         TEXT    NOT NULL
        CHECK (state IN ('in-progress', 'finished', 'failed', 'cancelled')),
    last_attempt  INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    output_table  TEXT,
    label         TEXT,
    PRIMARY KEY (run_id, node_id, iteration)
);

-- `list_runs` orders runs by their newest node.
CREATE INDEX nodes_updated_at ON nodes (updated_at_ms);

CREATE TABLE outputs (
    run_id        TEXT    NOT NULL,
    node_id       TEXT    NOT NULL,
    iteration     INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    output        TEXT    NOT NULL,
    written_at_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, node_id, iteration)
);

-- AUTOINCREMENT so a sequence number is never reused, even after the newest rows are deleted.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT    NOT NULL,
    node_id      TEXT    NOT NULL,
    iteration    INTEGER NOT NULL,
    attempt      INTEGER NOT NULL,
    type         TEXT    NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    body         TEXT    NOT NULL
);

CREATE INDEX events_run_seq ON events (run_id, seq);
