-- Every attempt of a job that did not succeed the first time: when it started and ended, on
-- which worker, how, and its error. Written with the outcome; a job that completes on its
-- first attempt adds no row (its row says it all), so the hot path writes nothing more.
-- Bounded by max_attempts, and deleted with its job.
CREATE TABLE job_attempt (
    job_id      BIGINT  NOT NULL REFERENCES job (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    started_at  BIGINT,
    finished_at BIGINT  NOT NULL,
    worker      TEXT,
    outcome     TEXT    NOT NULL,
    error       TEXT,
    PRIMARY KEY (job_id, attempt)
);
