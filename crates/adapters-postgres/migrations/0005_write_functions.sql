-- The writes of an attempt and of a task's claim as functions, so that each is one round trip
-- and one implicit transaction instead of BEGIN, three to five statements and COMMIT, each its
-- own round trip. The statements are those the adapter issued one by one before, in the same
-- order and under the same locks. Each statement of a PL/pgSQL function takes a new snapshot
-- (read committed), so a statement that follows a lock wait sees what the previous holder
-- committed, as a separate statement did.
--
-- Times are milliseconds since the Unix epoch. `lease_now` is the caller's time when leases
-- follow the caller's clock, NULL for the database's clock.

-- Now on the database's clock.
CREATE FUNCTION stint_now_ms() RETURNS bigint
LANGUAGE sql VOLATILE AS $$ SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint $$;

-- Appends events (a JSON array of their bodies, in order: each body holds the event's run, node,
-- iteration, attempt, type and time) under the advisory locks `lock_keys` (a JSON array) of
-- their runs, taken in the order given (ascending: two writers never wait on each other in a
-- cycle). A lock is held until commit, so the seqs of a run are drawn and committed in one order
-- and a reader tailing `seq > last` never passes over one that commits later.
CREATE FUNCTION stint_insert_events(lock_keys jsonb, bodies jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    lock_key bigint;
BEGIN
    FOR lock_key IN SELECT l.k::bigint
                      FROM jsonb_array_elements_text(lock_keys) WITH ORDINALITY AS l(k, ord)
                     ORDER BY l.ord LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
    END LOOP;
    INSERT INTO events (run_id, node_id, iteration, attempt, type, timestamp_ms, body)
    SELECT e.body->>'run_id', e.body->>'node_id', (e.body->>'iteration')::bigint,
           (e.body->>'attempt')::bigint, e.body->>'type', (e.body->>'timestamp_ms')::bigint,
           e.body
      FROM jsonb_array_elements(bodies) WITH ORDINALITY AS e(body, ord)
     ORDER BY e.ord;
END $$;

-- Begins the next attempt of a node unless one is in progress. The node's row (created on its
-- first begin) stays locked to commit: every begin of this node on any machine waits here, so
-- the numbering that follows cannot race. `started` is the NodeStarted event's body, its
-- attempt number filled in here; `lock_key` its run's event lock.
--
-- Answers the node's highest attempt number before this begin, whether the attempt began (not
-- when one is in progress or the numbers ran out), the failed and in-progress attempts, and the
-- last checkpoint as text.
CREATE FUNCTION stint_begin_attempt(
    p_run_id text, p_node_id text, p_iteration bigint, p_owner text, p_lease_ms bigint,
    p_started_at_ms bigint, p_metadata jsonb, p_working_dir text, p_output_table text,
    p_label text, p_lease_now bigint, p_lock_key bigint, p_started jsonb
) RETURNS TABLE (highest bigint, began boolean, failed bigint, running bigint, checkpoint text)
LANGUAGE plpgsql AS $$
DECLARE
    v_highest bigint;
    v_failed bigint;
    v_running bigint;
    v_checkpoint text;
BEGIN
    INSERT INTO nodes (run_id, node_id, iteration, state, last_attempt, updated_at_ms,
                       output_table, label)
    VALUES (p_run_id, p_node_id, p_iteration, 'in-progress', 0, p_started_at_ms,
            p_output_table, p_label)
    ON CONFLICT (run_id, node_id, iteration) DO UPDATE SET last_attempt = nodes.last_attempt;

    SELECT COALESCE(MAX(a.attempt), 0),
           COUNT(*) FILTER (WHERE a.state = 'failed'),
           COUNT(*) FILTER (WHERE a.state = 'in-progress'),
           (SELECT h.heartbeat::text FROM attempts h
             WHERE h.run_id = p_run_id AND h.node_id = p_node_id AND h.iteration = p_iteration
               AND h.heartbeat IS NOT NULL
             ORDER BY h.attempt DESC LIMIT 1)
      INTO v_highest, v_failed, v_running, v_checkpoint
      FROM attempts a
     WHERE a.run_id = p_run_id AND a.node_id = p_node_id AND a.iteration = p_iteration;

    IF v_running > 0 OR v_highest >= 4294967295 THEN
        RETURN QUERY SELECT v_highest, false, v_failed, v_running, v_checkpoint;
        RETURN;
    END IF;

    INSERT INTO attempts (run_id, node_id, iteration, attempt, state, owner,
                          lease_expires_at_ms, started_at_ms, metadata, working_dir)
    VALUES (p_run_id, p_node_id, p_iteration, v_highest + 1, 'in-progress', p_owner,
            COALESCE(p_lease_now, stint_now_ms()) + p_lease_ms, p_started_at_ms, p_metadata,
            p_working_dir);
    UPDATE nodes SET state = 'in-progress', last_attempt = v_highest + 1,
                     updated_at_ms = p_started_at_ms, output_table = p_output_table,
                     label = p_label
     WHERE run_id = p_run_id AND node_id = p_node_id AND iteration = p_iteration;
    PERFORM stint_insert_events(
        jsonb_build_array(p_lock_key),
        jsonb_build_array(p_started || jsonb_build_object('attempt', v_highest + 1)));
    RETURN QUERY SELECT v_highest, true, v_failed, 0::bigint, v_checkpoint;
END $$;

-- One heartbeat of an attempt in progress under `p_owner`, and its event: a NULL payload (a bare
-- ping) keeps the stored one, and the received-at time never moves back. Answers whether the
-- attempt was still the owner's (nothing is written when it was not).
CREATE FUNCTION stint_record_heartbeat(
    p_run_id text, p_node_id text, p_iteration bigint, p_attempt bigint, p_owner text,
    p_payload jsonb, p_received_at_ms bigint,
    lock_keys jsonb, events jsonb
) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE attempts SET heartbeat = COALESCE(p_payload, heartbeat),
                        last_heartbeat_at_ms = GREATEST(last_heartbeat_at_ms, p_received_at_ms)
     WHERE run_id = p_run_id AND node_id = p_node_id AND iteration = p_iteration
       AND attempt = p_attempt AND state = 'in-progress' AND owner = p_owner;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM stint_insert_events(lock_keys, events);
    RETURN true;
END $$;

-- Ends task `p_task` as `p_state` if it is running under `p_owner`; answers whether it did. A
-- task whose cancellation was asked for does not go back to the queue: it ends cancelled. A
-- task back in the queue and due at once wakes the workers listening on `p_channel` (on
-- commit); a queue name too long for a payload is sent empty ("any queue").
CREATE FUNCTION stint_complete_task(
    p_task bigint, p_owner text, p_state text, p_run_at_ms bigint, p_error jsonb,
    p_now_ms bigint, p_channel text
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_queue text;
    v_state text;
    v_run_at_ms bigint;
BEGIN
    UPDATE tasks SET
        state = CASE WHEN p_state = 'ready' AND cancel_requested THEN 'cancelled'
                     ELSE p_state END,
        ended_at_ms = CASE WHEN p_state <> 'ready' OR cancel_requested THEN p_now_ms END,
        run_at_ms = COALESCE(p_run_at_ms, run_at_ms), last_error = COALESCE(p_error, last_error),
        owner = NULL, lease_expires_at_ms = NULL, updated_at_ms = p_now_ms
     WHERE id = p_task AND state = 'running' AND owner = p_owner
    RETURNING queue, state, run_at_ms INTO v_queue, v_state, v_run_at_ms;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF v_state = 'ready' AND v_run_at_ms <= p_now_ms THEN
        PERFORM pg_notify(p_channel,
                          CASE WHEN octet_length(v_queue) < 7900 THEN v_queue ELSE '' END);
    END IF;
    RETURN true;
END $$;

-- The terminal write of an attempt in progress under `p_owner`: the attempt, its node (if this
-- is still its last attempt), its output (when it finished with one), the end of its claimed
-- task (`p_task`, when given; ended only if still claimed by `p_task_owner`) and its events,
-- all in the caller's one transaction. Nothing is written when the attempt is no longer the
-- owner's. Answers whether the attempt ended and whether the task did.
CREATE FUNCTION stint_end_attempt(
    p_run_id text, p_node_id text, p_iteration bigint, p_attempt bigint, p_owner text,
    p_state text, p_finished_at_ms bigint, p_error jsonb, p_retryable boolean, p_vcs text,
    p_output jsonb,
    p_task bigint, p_task_owner text, p_task_state text, p_task_run_at_ms bigint,
    p_task_error jsonb, p_task_now_ms bigint, p_channel text,
    lock_keys jsonb, events jsonb
) RETURNS TABLE (ended boolean, task_ended boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_task_ended boolean := false;
BEGIN
    UPDATE attempts SET state = p_state, finished_at_ms = p_finished_at_ms, error = p_error,
                        retryable = p_retryable, vcs = p_vcs
     WHERE run_id = p_run_id AND node_id = p_node_id AND iteration = p_iteration
       AND attempt = p_attempt AND state = 'in-progress' AND owner = p_owner;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, false;
        RETURN;
    END IF;
    UPDATE nodes SET state = p_state, updated_at_ms = p_finished_at_ms
     WHERE run_id = p_run_id AND node_id = p_node_id AND iteration = p_iteration
       AND last_attempt = p_attempt;
    IF p_output IS NOT NULL THEN
        INSERT INTO outputs (run_id, node_id, iteration, attempt, output, written_at_ms)
        VALUES (p_run_id, p_node_id, p_iteration, p_attempt, p_output, p_finished_at_ms)
        ON CONFLICT (run_id, node_id, iteration) DO UPDATE
        SET attempt = EXCLUDED.attempt, output = EXCLUDED.output,
            written_at_ms = EXCLUDED.written_at_ms;
    END IF;
    IF p_task IS NOT NULL THEN
        v_task_ended := stint_complete_task(p_task, p_task_owner, p_task_state,
                                            p_task_run_at_ms, p_task_error, p_task_now_ms,
                                            p_channel);
    END IF;
    -- Last: the events take their runs' locks, held until the commit.
    PERFORM stint_insert_events(lock_keys, events);
    RETURN QUERY SELECT true, v_task_ended;
END $$;

-- Claims up to `p_max` ready tasks due by `p_now_ms` from the queues `p_queues`, highest
-- priority first, then earliest due, then submission order. A queue with a limit has its row
-- locked to commit first, so that counting its running tasks and claiming up to the limit is
-- one step for every claimer of that queue; the count is a new statement after the lock, so it
-- sees the claims the previous holder committed. Tasks another transaction holds are skipped,
-- so racing claimers pass each other instead of queueing.
CREATE FUNCTION stint_claim(
    p_queues text[], p_max bigint, p_now_ms bigint, p_owner text, p_lease_now bigint,
    p_lease_ms bigint
) RETURNS SETOF tasks
LANGUAGE plpgsql AS $$
DECLARE
    v_names text[];
    v_slots bigint[];
BEGIN
    v_names := ARRAY(SELECT DISTINCT n FROM unnest(p_queues) AS n ORDER BY n);
    PERFORM 1 FROM queues
     WHERE name = ANY(v_names) AND max_running IS NOT NULL ORDER BY name FOR UPDATE;
    IF FOUND THEN
        v_slots := ARRAY(
            SELECT CASE WHEN q.max_running IS NULL THEN p_max
                        ELSE LEAST(p_max, GREATEST(0, q.max_running
                             - (SELECT COUNT(*) FROM tasks t
                                 WHERE t.queue = n.name AND t.state = 'running'))) END
              FROM unnest(v_names) WITH ORDINALITY AS n(name, ord)
              LEFT JOIN queues q ON q.name = n.name
             ORDER BY n.ord);
    ELSE
        v_slots := array_fill(p_max, ARRAY[cardinality(v_names)]);
    END IF;
    RETURN QUERY
    WITH picked AS (
        SELECT t.id AS pick_id FROM unnest(v_names, v_slots) AS q(name, slots)
        CROSS JOIN LATERAL (
            SELECT id, priority, run_at_ms FROM tasks
             WHERE state = 'ready' AND queue = q.name AND run_at_ms <= p_now_ms
             ORDER BY priority DESC, run_at_ms, id LIMIT q.slots FOR UPDATE SKIP LOCKED) t
        ORDER BY t.priority DESC, t.run_at_ms, t.id LIMIT p_max)
    UPDATE tasks SET state = 'running', owner = p_owner,
        lease_expires_at_ms = COALESCE(p_lease_now, stint_now_ms()) + p_lease_ms,
        claims = claims + 1, updated_at_ms = p_now_ms
    FROM picked WHERE tasks.id = picked.pick_id
    RETURNING tasks.*;
END $$;

-- Applies a batch of attempt writes in the caller's one transaction (group commit: one WAL
-- flush for them all) and answers one JSON object per write, in order. Each write is an object
-- with its kind in "op" ("begin", "heartbeat" or "end") and the arguments of the function above
-- it calls by name; an argument that is absent is NULL, and a JSON null in a JSON argument is
-- that JSON value (an output may be null). "lock_keys" and "events" are the events' run locks and bodies.
-- A write that is refused (not the owner's, one in progress) answers so and writes nothing; one
-- that raises an error aborts the batch, whose writes the caller then applies one by one.
CREATE FUNCTION stint_write_batch(ops jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    op jsonb;
    answer jsonb;
    answers jsonb[] := '{}';
BEGIN
    FOR op IN SELECT o.item FROM jsonb_array_elements(ops) WITH ORDINALITY AS o(item, ord)
               ORDER BY o.ord LOOP
        CASE op->>'op'
        WHEN 'begin' THEN
            SELECT to_jsonb(b) INTO answer FROM stint_begin_attempt(
                op->>'run_id', op->>'node_id', (op->>'iteration')::bigint, op->>'owner',
                (op->>'lease_ms')::bigint, (op->>'started_at_ms')::bigint, op->'metadata',
                op->>'working_dir', op->>'output_table', op->>'label',
                (op->>'lease_now')::bigint, (op->>'lock_key')::bigint, op->'started') AS b;
        WHEN 'heartbeat' THEN
            answer := jsonb_build_object('written', stint_record_heartbeat(
                op->>'run_id', op->>'node_id', (op->>'iteration')::bigint,
                (op->>'attempt')::bigint, op->>'owner', op->'payload',
                (op->>'received_at_ms')::bigint, op->'lock_keys', op->'events'));
        WHEN 'end' THEN
            SELECT to_jsonb(e) INTO answer FROM stint_end_attempt(
                op->>'run_id', op->>'node_id', (op->>'iteration')::bigint,
                (op->>'attempt')::bigint, op->>'owner', op->>'state',
                (op->>'finished_at_ms')::bigint, op->'error', (op->>'retryable')::boolean,
                op->>'vcs', op->'output',
                (op->>'task')::bigint, op->>'task_owner', op->>'task_state',
                (op->>'task_run_at_ms')::bigint, op->'task_error',
                (op->>'task_now_ms')::bigint, op->>'channel', op->'lock_keys',
                op->'events') AS e;
        END CASE;
        answers := answers || answer;
    END LOOP;
    RETURN to_jsonb(answers);
END $$;
