//! The `average_job` rows: the same SQL on both backends.

use conveyor_queue::{Store, Tx, dispatch};
use sqlx::FromRow;

conveyor_queue::text_enum! {
    /// Where an averaging job is, as stored.
    pub enum Status {
        /// Its files are being generated.
        Generating = "generating",
        /// The reduction tree is running.
        Processing = "processing",
        /// The averages are written.
        Completed = "completed",
        /// A task failed (`error` says which and why).
        Failed = "failed",
    }
}

/// One averaging job as stored.
#[derive(Debug, Clone, FromRow)]
pub struct Row {
    /// Identifier.
    pub id: i64,
    /// F.
    pub files: i64,
    /// C.
    pub entries: i64,
    /// Files per task.
    pub group_size: i32,
    /// Seed of the generated data.
    pub seed: i64,
    /// generating / processing / completed / failed (`aggregating`, once level 0 is done,
    /// is worked out from the tree's progress, not stored).
    #[sqlx(try_from = "String")]
    pub status: Status,
    /// -1 while generating, 0 once the reduction tree is enqueued.
    pub level: i32,
    /// The engine group running now: generation's, then the reduction tree's top one.
    pub group_id: Option<i64>,
    /// Generation tasks.
    pub generate_tasks: i32,
    /// Sum tasks over all levels.
    pub sum_tasks: i32,
    /// Prefix of its files in the store.
    pub location: String,
    /// The averages' file, when completed.
    pub output: Option<String>,
    /// The overall mean, when completed.
    pub mean: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Ms since the epoch.
    pub created_at: i64,
    /// When generation ended.
    pub generated_at: Option<i64>,
    /// When it completed or failed.
    pub finished_at: Option<i64>,
}

const COLUMNS: &str = "id, files, entries, group_size, seed, status, level, group_id, \
     generate_tasks, sum_tasks, location, output, mean, error, created_at, \
     generated_at, finished_at";

/// What a new job needs.
#[derive(Debug, Clone)]
pub struct NewRow {
    /// F.
    pub files: i64,
    /// C.
    pub entries: i64,
    /// Files per task.
    pub group_size: i32,
    /// Seed.
    pub seed: i64,
    /// Generation tasks.
    pub generate_tasks: i32,
    /// Sum tasks.
    pub sum_tasks: i32,
    /// Ms since the epoch.
    pub now: i64,
}

/// Inserts a job in `tx`; its location is `average/<id>`.
pub async fn insert(tx: &mut Tx, new: &NewRow) -> sqlx::Result<i64> {
    let id: i64 = dispatch!(tx.conn(), conn => {
        sqlx::query_scalar(
            "INSERT INTO average_job (files, entries, group_size, seed, status, level, \
                 generate_tasks, sum_tasks, location, created_at) \
             VALUES ($1, $2, $3, $4, 'generating', -1, $5, $6, '', $7) RETURNING id",
        )
        .bind(new.files)
        .bind(new.entries)
        .bind(new.group_size)
        .bind(new.seed)
        .bind(new.generate_tasks)
        .bind(new.sum_tasks)
        .bind(new.now)
        .fetch_one(conn)
        .await?
    });
    dispatch!(tx.conn(), conn => {
        sqlx::query("UPDATE average_job SET location = $2 WHERE id = $1")
            .bind(id)
            .bind(crate::plan::location(id))
            .execute(conn)
            .await?;
    });
    Ok(id)
}

/// Moves a job from generating to processing, with the group of its reduction tree;
/// `false` when it had moved already (a continuation that ran twice), or is gone.
pub async fn advance(tx: &mut Tx, id: i64, group_id: i64, now: i64) -> sqlx::Result<bool> {
    let moved = dispatch!(tx.conn(), conn => {
        sqlx::query(
            "UPDATE average_job \
             SET level = 0, status = 'processing', group_id = $2, generated_at = $3 \
             WHERE id = $1 AND level = -1 AND status = 'generating'",
        )
        .bind(id)
        .bind(group_id)
        .bind(now)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(moved == 1)
}

/// Ends a job: completed with its output and mean, or failed with an error; `false` when
/// it had ended already, or is gone.
pub async fn finish(
    store: &Store,
    id: i64,
    outcome: Result<(&str, f64), &str>,
    now: i64,
) -> sqlx::Result<bool> {
    let (status, output, mean, error) = match outcome {
        Ok((output, mean)) => ("completed", Some(output), Some(mean), None),
        Err(error) => ("failed", None, None, Some(error)),
    };
    let done = dispatch!(store.writer(), pool => {
        sqlx::query(
            "UPDATE average_job \
             SET status = $2, output = $3, mean = $4, error = $5, finished_at = $6 \
             WHERE id = $1 AND status IN ('generating', 'processing', 'aggregating')",
        )
        .bind(id)
        .bind(status)
        .bind(output)
        .bind(mean)
        .bind(error)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}

/// One job.
pub async fn get(store: &Store, id: i64) -> sqlx::Result<Option<Row>> {
    let sql = format!("SELECT {COLUMNS} FROM average_job WHERE id = $1");
    dispatch!(store.reader(), pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await
    })
}

/// The newest jobs, before `before` when given.
pub async fn list(store: &Store, before: Option<i64>, limit: i64) -> sqlx::Result<Vec<Row>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM average_job WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
    );
    dispatch!(store.reader(), pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(before).bind(limit).fetch_all(pool).await
    })
}

/// Removes a job's row; `false` when there was none.
pub async fn delete(store: &Store, id: i64) -> sqlx::Result<bool> {
    let deleted = dispatch!(store.writer(), pool => {
        sqlx::query("DELETE FROM average_job WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(deleted == 1)
}

/// Jobs not ended yet.
pub async fn active(store: &Store) -> sqlx::Result<i64> {
    dispatch!(store.reader(), pool => {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM average_job \
             WHERE status IN ('generating', 'processing', 'aggregating')",
        )
        .fetch_one(pool)
        .await
    })
}

/// Records the generation group of a new job.
pub async fn advance_generation(tx: &mut Tx, id: i64, group_id: i64) -> sqlx::Result<()> {
    dispatch!(tx.conn(), conn => {
        sqlx::query("UPDATE average_job SET group_id = $2 WHERE id = $1")
            .bind(id)
            .bind(group_id)
            .execute(conn)
            .await?;
    });
    Ok(())
}
