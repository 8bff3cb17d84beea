-- An operator asked this worker to finish its running jobs and stop; it reads this at its
-- next heartbeat.
ALTER TABLE worker ADD COLUMN stop_requested BOOLEAN NOT NULL DEFAULT FALSE;
