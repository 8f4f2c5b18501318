-- Set by `stint cancel --run` on the run's in-progress attempts; the owner of each learns it at
-- its next lease renewal and cancels the attempt (0/1).
ALTER TABLE attempts ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
