-- The job a schedule's last tick enqueued, for the dashboard's schedules page (its state and
-- outcome are the job's).
ALTER TABLE periodic ADD COLUMN last_job_id BIGINT;
