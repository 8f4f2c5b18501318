-- A node never has two attempts in progress: begin_attempt checks it inside its IMMEDIATE
-- transaction, and this index makes the database refuse it too (as the PostgreSQL schema does).
CREATE UNIQUE INDEX attempts_one_in_progress ON attempts (run_id, node_id, iteration)
    WHERE state = 'in-progress';
