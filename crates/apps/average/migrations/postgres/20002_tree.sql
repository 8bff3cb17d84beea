-- average reduces through one engine tree of groups (2026-12-07): `group_id` is the tree's top
-- group once generation has ended, `level` is -1 while generating and 0 after, and task
-- counts come from the engine (`Store::tree_progress`). The counter of finished levels'
-- sum tasks has no use any more.
ALTER TABLE average_job DROP COLUMN sum_tasks_done;
