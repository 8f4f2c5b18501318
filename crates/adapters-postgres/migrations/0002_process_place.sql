-- Where an attempt's process group lives (ProcessPlace), recorded by its runner after it started
-- the command, so that recovery on that host can end a group its dead runner left behind.
ALTER TABLE attempts ADD COLUMN process JSONB;
