-- Async jobs (issue 16): a queued or running record of a job on the in-process queue carries the job's
-- payload, so the instance that accepted it can run it again after a restart; final records clear it.
ALTER TABLE runs ADD COLUMN job jsonb;
