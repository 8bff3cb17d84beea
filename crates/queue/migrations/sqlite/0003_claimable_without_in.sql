-- The claimable index's condition as equalities joined by OR instead of `state IN (...)`.
-- SQLite evaluates a partial index's WHERE for the old and the new version of every row it
-- writes, and codes an IN list of more than two values there as a temporary index filled
-- anew for each row (`EXPLAIN` shows `OpenEphemeral` and one `IdxInsert` per value inside
-- the row loop); a few string comparisons cost a fraction of that. A query uses a partial
-- index only when its WHERE contains the index's condition as written, so the claim and
-- `next_due` spell it the same way (`CLAIMABLE_SQLITE` in src/lease.rs).
DROP INDEX job_claimable_idx;
CREATE INDEX job_claimable_idx ON job (queue, priority DESC, run_at, id)
    WHERE state = 'available' OR state = 'retryable' OR state = 'scheduled';
