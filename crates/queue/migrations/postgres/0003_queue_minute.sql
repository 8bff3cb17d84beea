-- Jobs ended per queue and minute, counted by the completer in the transaction that records
-- the outcomes, for the dashboard's throughput charts (Sidekiq's "processed" and "failed"):
-- a chart reads at most 1,440 rows a queue instead of scanning job rows, and the counts
-- outlive the jobs' retention. The cleaner keeps two days.
CREATE TABLE queue_minute (
    queue     TEXT   NOT NULL,
    minute    BIGINT NOT NULL,
    completed BIGINT NOT NULL DEFAULT 0,
    failed    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, minute)
);
