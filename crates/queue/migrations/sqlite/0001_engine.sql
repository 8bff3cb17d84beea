-- The job engine's tables. Times are milliseconds since the Unix epoch (BIGINT) on both
-- backends, so the engine's SQL is the same text on SQLite and PostgreSQL wherever the
-- semantics agree. See docs/job-states.md for the meaning of each state.

CREATE TABLE job_group (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    total INTEGER NOT NULL,
    remaining INTEGER NOT NULL,
    continuation_id BIGINT,
    created_at BIGINT NOT NULL
);

CREATE INDEX job_group_continuation_idx ON job_group (continuation_id);

CREATE TABLE job (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    args TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'scheduled', 'available', 'running', 'retryable', 'completed', 'failed', 'cancelled')),
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

-- What a claim scans: waiting rows of one queue, best first.
CREATE INDEX job_claimable_idx ON job (queue, priority DESC, run_at, id)
    WHERE state IN ('scheduled', 'available', 'retryable');

-- What the heartbeat (by owner) and the rescuer (every running row: few, bounded by the
-- workers' concurrency) read. Each index costs every claim and completion a write, and on
-- PostgreSQL a state change updates every index, so the table keeps only these.
CREATE INDEX job_lease_owner_idx ON job (lease_owner)
    WHERE state = 'running';

-- A unique key holds while its job is live; a finished job frees it.
CREATE UNIQUE INDEX job_unique_key_idx ON job (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'scheduled', 'available', 'running', 'retryable');

-- What the cleaner scans.
CREATE INDEX job_finished_idx ON job (finished_at)
    WHERE state IN ('completed', 'failed', 'cancelled');

CREATE INDEX job_group_member_idx ON job (group_id)
    WHERE group_id IS NOT NULL;

-- One row per periodic schedule: the compare-and-set on next_run_at makes one scheduler win
-- each tick however many run.
CREATE TABLE periodic (
    name TEXT PRIMARY KEY,
    expression TEXT NOT NULL,
    next_run_at BIGINT NOT NULL
);

-- Concurrency set through the API; workers read it on each heartbeat.
CREATE TABLE queue_setting (
    name TEXT PRIMARY KEY,
    concurrency INTEGER NOT NULL CHECK (concurrency >= 0),
    updated_at BIGINT NOT NULL
);

-- The registry of live worker processes, refreshed by their heartbeats. A worker's lease
-- (lease_until) covers every job it runs: one row written per heartbeat, however many jobs.
CREATE TABLE worker (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    queues TEXT NOT NULL,
    running BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
