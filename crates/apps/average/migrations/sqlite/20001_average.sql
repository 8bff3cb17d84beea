-- average: one row per averaging job. Its work runs as engine jobs (queue `average`): a group
-- that generates the input files, then one group per reduction level, each level's
-- continuation planning the next. `group_id` is the engine group now running, so task counts
-- come from it exactly (job_group.total - remaining) without a counter of our own.

CREATE TABLE average_job (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    files BIGINT NOT NULL,
    entries BIGINT NOT NULL,
    group_size INTEGER NOT NULL,
    seed BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('generating', 'processing', 'aggregating', 'completed', 'failed')),
    -- -1 while generating, then the reduction level whose group runs.
    level INTEGER NOT NULL,
    group_id BIGINT,
    generate_tasks INTEGER NOT NULL,
    sum_tasks INTEGER NOT NULL,
    -- Sum tasks of the levels already finished.
    sum_tasks_done INTEGER NOT NULL DEFAULT 0,
    location TEXT NOT NULL,
    output TEXT,
    mean REAL,
    error TEXT,
    created_at BIGINT NOT NULL,
    generated_at BIGINT,
    finished_at BIGINT
);
