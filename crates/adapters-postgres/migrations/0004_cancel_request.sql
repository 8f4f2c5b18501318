-- Set by `stint cancel --run` on the run's in-progress attempts; the owner of each learns it at
-- its next lease renewal and cancels the attempt.
ALTER TABLE attempts ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT false;
