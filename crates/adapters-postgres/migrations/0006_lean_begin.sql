-- Fewer row versions and index entries per attempt, the same locks and answers.
--
-- A node's row is no longer indexed by its update time: no query reads nodes by that time alone
-- (the run listings aggregate it per run), and without the index an update of a node's state and
-- time is a HOT update, which writes no index entry.
DROP INDEX IF EXISTS nodes_updated;

-- The begin of migration 0005, with a path for a node's first begin: its row is written once, as
-- it stands after the begin, instead of inserted and then updated, and its attempts are not read
-- (a node's attempts are only ever written after its row, in the transaction that locks it). A
-- racing begin of the same node waits on that uncommitted row, then takes the locked path and
-- sees the attempt in progress. The NodeStarted event is inserted here, under its run's lock.
CREATE OR REPLACE FUNCTION stint_begin_attempt(
    p_run_id text, p_node_id text, p_iteration bigint, p_owner text, p_lease_ms bigint,
    p_started_at_ms bigint, p_metadata jsonb, p_working_dir text, p_output_table text,
    p_label text, p_lease_now bigint, p_lock_key bigint, p_started jsonb
) RETURNS TABLE (highest bigint, began boolean, failed bigint, running bigint, checkpoint text)
LANGUAGE plpgsql AS $$
DECLARE
    v_highest bigint := 0;
    v_failed bigint := 0;
    v_running bigint := 0;
    v_checkpoint text;
BEGIN
    INSERT INTO nodes (run_id, node_id, iteration, state, last_attempt, updated_at_ms,
                       output_table, label)
    VALUES (p_run_id, p_node_id, p_iteration, 'in-progress', 1, p_started_at_ms,
            p_output_table, p_label)
    ON CONFLICT (run_id, node_id, iteration) DO NOTHING;

    IF NOT FOUND THEN
        PERFORM 1 FROM nodes
         WHERE run_id = p_run_id AND node_id = p_node_id AND iteration = p_iteration
           FOR UPDATE;
        SELECT COALESCE(MAX(a.attempt), 0),
               COUNT(*) FILTER (WHERE a.state = 'failed'),
               COUNT(*) FILTER (WHERE a.state = 'in-progress'),
               (SELECT h.heartbeat::text FROM attempts h
                 WHERE h.run_id = p_run_id AND h.node_id = p_node_id
                   AND h.iteration = p_iteration AND h.heartbeat IS NOT NULL
                 ORDER BY h.attempt DESC LIMIT 1)
          INTO v_highest, v_failed, v_running, v_checkpoint
          FROM attempts a
         WHERE a.run_id = p_run_id AND a.node_id = p_node_id AND a.iteration = p_iteration;
        IF v_running > 0 OR v_highest >= 4294967295 THEN
            RETURN QUERY SELECT v_highest, false, v_failed, v_running, v_checkpoint;
            RETURN;
        END IF;
        UPDATE nodes SET state = 'in-progress', last_attempt = v_highest + 1,
                         updated_at_ms = p_started_at_ms, output_table = p_output_table,
                         label = p_label
         WHERE run_id = p_run_id AND node_id = p_node_id AND iteration = p_iteration;
    END IF;

    INSERT INTO attempts (run_id, node_id, iteration, attempt, state, owner,
                          lease_expires_at_ms, started_at_ms, metadata, working_dir)
    VALUES (p_run_id, p_node_id, p_iteration, v_highest + 1, 'in-progress', p_owner,
            COALESCE(p_lease_now, stint_now_ms()) + p_lease_ms, p_started_at_ms, p_metadata,
            p_working_dir);
    -- Last: the event takes its run's lock, held until the commit.
    PERFORM pg_advisory_xact_lock(p_lock_key);
    INSERT INTO events (run_id, node_id, iteration, attempt, type, timestamp_ms, body)
    VALUES (p_started->>'run_id', p_started->>'node_id', (p_started->>'iteration')::bigint,
            v_highest + 1, p_started->>'type', (p_started->>'timestamp_ms')::bigint,
            p_started || jsonb_build_object('attempt', v_highest + 1));
    RETURN QUERY SELECT v_highest, true, v_failed, 0::bigint, v_checkpoint;
END $$;

-- The claim's statement was planned afresh on every call (PL/pgSQL kept choosing custom plans:
-- about 0.15 ms of planning per claim, more than executing it). Its generic plan is the one a
-- custom plan picks anyway: the claimable index, per queue, up to its slots.
ALTER FUNCTION stint_claim(text[], bigint, bigint, text, bigint, bigint)
    SET plan_cache_mode = force_generic_plan;
