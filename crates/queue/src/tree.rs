//! Trees of groups (tree reduction): leaves in groups of `fan_in`, each group's continuation
//! a node that is itself a member of a group of the level above, up to a single root.
//!
//! A node becomes ready the moment its own `fan_in` members have ended, not when its whole
//! level has: no barrier between levels, and no planning job between them. The tree is
//! inserted at once, from the root down, so that every group exists before its members:
//! a few multi-row statements per level. Nodes wait in state `pending`; settling is the
//! ordinary group settling of [`crate::group`], since a node is an ordinary member of the
//! group above it.

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::job::NewJob;
use crate::store::{Store, Tx, dispatch};

/// A recursive query's body: the group `$1` at depth 0, and every group whose continuation
/// is a member of a group found, one depth further.
macro_rules! subgroups {
    () => {
        "SELECT CAST($1 AS BIGINT), 0 \
         UNION ALL \
         SELECT child.id, tree.depth + 1 \
         FROM tree \
         JOIN job AS member ON member.group_id = tree.id \
         JOIN job_group AS child ON child.continuation_id = member.id"
    };
}
pub(crate) use subgroups;

/// The ids of an enqueued tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEnqueued {
    /// The root's group: pass it to [`Store::group_job_ids`] or [`Store::tree_progress`].
    pub root_group_id: i64,
    /// The root: `pending` until its members have ended.
    pub root_id: i64,
    /// The leaves, in the order given.
    pub leaf_ids: Vec<i64>,
}

/// Jobs per level, from the leaves (level 0) to the root (the last, with one); there is
/// always at least one level of nodes above the leaves.
pub fn tree_levels(leaves: u64, fan_in: u64) -> Vec<u64> {
    let mut levels = vec![leaves];
    loop {
        let below = *levels.last().unwrap_or(&1);
        levels.push(below.div_ceil(fan_in.max(2)));
        if below <= fan_in {
            return levels;
        }
    }
}

impl Store {
    /// Enqueues a tree in its own transaction (see [`Tx::enqueue_tree`]).
    ///
    /// # Errors
    /// As [`Tx::enqueue_tree`].
    pub async fn enqueue_tree(
        &self,
        leaves: &[NewJob],
        fan_in: usize,
        node: impl FnMut(u32, u64) -> NewJob,
    ) -> Result<TreeEnqueued> {
        let mut tx = self.begin().await?;
        let tree = tx.enqueue_tree(leaves, fan_in, node).await?;
        tx.commit().await?;
        Ok(tree)
    }
}

impl Tx {
    /// Enqueues `leaves` as a reduction tree: leaves `fan_in` at a time form a group whose
    /// continuation is `node(1, index)`; those nodes, `fan_in` at a time, form the groups of
    /// level 2, and so on until a level has one node, the root. Node `index` of level `k`
    /// is the continuation of the group of jobs `index * fan_in ..` of level `k - 1`, and
    /// reads their outcomes with [`crate::JobContext::group_members`].
    ///
    /// # Errors
    /// [`Error::InvalidJob`] for no leaves, a fan-in under 2, an invalid job or a unique
    /// key; [`Error::Database`].
    pub async fn enqueue_tree(
        &mut self,
        leaves: &[NewJob],
        fan_in: usize,
        mut node: impl FnMut(u32, u64) -> NewJob,
    ) -> Result<TreeEnqueued> {
        if leaves.is_empty() || fan_in < 2 {
            return Err(Error::InvalidJob(
                "a tree needs leaves and a fan-in of at least 2".to_owned(),
            ));
        }
        check(leaves)?;
        let levels = tree_levels(leaves.len() as u64, fan_in as u64);
        let group_of = |groups: &[i64], i: usize| groups.get(i / fan_in).copied();
        // From the root down: a level's nodes go in as members of the groups made for the
        // level above, then their own groups are made, waiting for the level below.
        let mut parent_groups: Vec<i64> = Vec::new();
        let mut root = None;
        for level in (1..levels.len()).rev() {
            let nodes: Vec<NewJob> = (0..levels[level])
                .map(|index| node(level as u32, index))
                .collect();
            check(&nodes)?;
            let node_ids = self
                .insert_many(&nodes, |i| group_of(&parent_groups, i), true)
                .await?;
            let below = levels[level - 1] as usize;
            let groups: Vec<(i64, i32)> = node_ids
                .iter()
                .enumerate()
                .map(|(i, &id)| {
                    let first = i * fan_in;
                    (id, (below.min(first + fan_in) - first) as i32)
                })
                .collect();
            parent_groups = self.insert_groups(&groups).await?;
            root.get_or_insert((parent_groups[0], node_ids[0]));
        }
        let leaf_ids = self
            .insert_many(leaves, |i| group_of(&parent_groups, i), false)
            .await?;
        let (root_group_id, root_id) = root.expect("a tree has a level of nodes");
        Ok(TreeEnqueued {
            root_group_id,
            root_id,
            leaf_ids,
        })
    }

    /// Inserts one group per `(continuation, members)` pair; returns their ids, in order.
    async fn insert_groups(&mut self, groups: &[(i64, i32)]) -> Result<Vec<i64>> {
        let now = now_ms();
        let mut ids = Vec::with_capacity(groups.len());
        for chunk in groups.chunks(1000) {
            let rows: Vec<(i64, i64)> = dispatch!(self.conn(), conn => {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO job_group (continuation_id, total, remaining, created_at) ",
                );
                insert.push_values(chunk, |mut row, (continuation, total)| {
                    row.push_bind(continuation)
                        .push_bind(total)
                        .push_bind(total)
                        .push_bind(now);
                });
                insert.push(" RETURNING continuation_id, id");
                insert.build_query_as().fetch_all(conn).await?
            });
            // RETURNING's order is not promised: match the rows by continuation.
            let by_continuation: std::collections::HashMap<i64, i64> = rows.into_iter().collect();
            for (continuation, _) in chunk {
                ids.push(by_continuation[continuation]);
            }
        }
        Ok(ids)
    }
}

/// Refuses, before anything is stored, a job that is invalid or carries a unique key.
fn check(jobs: &[NewJob]) -> Result<()> {
    for job in jobs {
        job.validate()?;
        if job.unique_key.is_some() {
            return Err(Error::InvalidJob(
                "jobs of a tree cannot carry unique keys".to_owned(),
            ));
        }
    }
    Ok(())
}

impl Store {
    /// How far the tree (or plain group) under `group_id` has got: per depth from the top
    /// group (depth 0, whose members are the root's), the members in all and those not ended
    /// yet. A plain group has one depth; a tree's last depth counts its leaves.
    ///
    /// # Errors
    /// [`crate::Error::Database`].
    pub async fn tree_progress(&self, group_id: i64) -> Result<Vec<(i64, i64)>> {
        let rows: Vec<(i64, i64, i64)> = dispatch!(self.reader(), pool => {
            sqlx::query_as(concat!(
                "WITH RECURSIVE tree (id, depth) AS (",
                subgroups!(),
                ") SELECT CAST(tree.depth AS BIGINT), CAST(SUM(job_group.total) AS BIGINT), \
                          CAST(SUM(job_group.remaining) AS BIGINT) \
                 FROM tree JOIN job_group ON job_group.id = tree.id \
                 GROUP BY tree.depth ORDER BY tree.depth",
            ))
            .bind(group_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(_, total, remaining)| (total, remaining))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_shrink_by_the_fan_in_to_one_root() {
        assert_eq!(tree_levels(200, 5), [200, 40, 8, 2, 1]);
        assert_eq!(tree_levels(1, 5), [1, 1]);
        assert_eq!(tree_levels(5, 5), [5, 1]);
        assert_eq!(tree_levels(6, 5), [6, 2, 1]);
        assert_eq!(tree_levels(13, 3), [13, 5, 2, 1]);
        assert_eq!(tree_levels(4, 2), [4, 2, 1]);
    }
}
