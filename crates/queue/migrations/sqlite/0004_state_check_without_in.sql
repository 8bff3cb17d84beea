-- The job table's check on `state` as equalities joined by OR instead of `state IN (...)`,
-- for the reason 0003 gives: SQLite checks it on every row written, and codes an IN list
-- there as a temporary index filled anew for each row. SQLite cannot change a table's
-- CHECK in place, so the table is rebuilt: same columns in the same order, rows copied,
-- the AUTOINCREMENT high-water mark kept (an id is never reused), indexes made again.
CREATE TABLE job_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    args TEXT NOT NULL,
    state TEXT NOT NULL CHECK (
        state = 'available' OR state = 'running' OR state = 'completed'
        OR state = 'scheduled' OR state = 'retryable' OR state = 'pending'
        OR state = 'failed' OR state = 'cancelled'),
    priority INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL CHECK (max_attempts > 0),
    run_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    progress_done BIGINT,
    progress_total BIGINT,
    progress_message TEXT,
    result TEXT,
    error TEXT,
    group_id BIGINT,
    unique_key TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);

INSERT INTO job_rebuilt SELECT * FROM job;
DELETE FROM sqlite_sequence WHERE name = 'job_rebuilt';
INSERT INTO sqlite_sequence (name, seq) SELECT 'job_rebuilt', seq FROM sqlite_sequence WHERE name = 'job';
DROP TABLE job;
ALTER TABLE job_rebuilt RENAME TO job;

CREATE INDEX job_claimable_idx ON job (queue, priority DESC, run_at, id)
    WHERE state = 'available' OR state = 'retryable' OR state = 'scheduled';
CREATE INDEX job_lease_owner_idx ON job (lease_owner)
    WHERE state = 'running';
CREATE UNIQUE INDEX job_unique_key_idx ON job (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'scheduled', 'available', 'running', 'retryable');
CREATE INDEX job_finished_idx ON job (finished_at)
    WHERE finished_at IS NOT NULL;
CREATE INDEX job_group_member_idx ON job (group_id)
    WHERE group_id IS NOT NULL;
