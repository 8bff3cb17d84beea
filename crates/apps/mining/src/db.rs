//! The `mining_*` rows: the same SQL on both backends, except where many rows travel in one
//! statement (`replace_files`, `record_files`: arrays on PostgreSQL; JSON or anonymous
//! parameters on SQLite). Times in ms since the epoch.

use conveyor_queue::store::Db;
use conveyor_queue::{Sql, Store, Tx, dispatch};

use crate::analyzer::Summary;
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;

use crate::indexer::Found;

conveyor_queue::text_enum! {
    /// Where a repository is in the pipeline.
    #[derive(Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum RepoState {
        /// Found by an indexer (or added), waiting for room in the download area.
        Discovered = "discovered",
        /// Its clone job is enqueued.
        Queued = "queued",
        /// Being cloned.
        Fetching = "fetching",
        /// Cloned; its files are being analysed.
        Analyzing = "analyzing",
        /// Every file analysed.
        Analyzed = "analyzed",
        /// Cloning or listing failed (`error` says why).
        Failed = "failed",
    }
}

conveyor_queue::text_enum! {
    /// Where a file is.
    #[derive(Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum FileState {
        /// Waiting for its analysis task.
        Pending = "pending",
        /// Measured.
        Analyzed = "analyzed",
        /// Not measured (`error` says why: the analyzer, or the size or time limit).
        Failed = "failed",
    }
}

/// An indexer as stored.
#[derive(Debug, Clone, FromRow, Serialize, ToSchema)]
pub struct IndexerRow {
    /// Its name (one per host by default).
    pub name: String,
    /// Which implementation.
    pub host: String,
    /// Whether the periodic tick runs it.
    pub enabled: bool,
    /// JSON settings.
    pub settings: String,
    /// JSON cursor: where it goes on from.
    pub cursor: String,
    /// Throttled (or at its end) until then.
    pub paused_until: Option<i64>,
    /// Repositories it has found.
    pub discovered: i64,
    /// When it last fetched a batch.
    pub last_run_at: Option<i64>,
    /// What went wrong last, if anything.
    pub last_error: Option<String>,
    /// Last change.
    pub updated_at: i64,
}

const INDEXER_COLUMNS: &str = "name, host, enabled, settings, cursor, paused_until, discovered, \
     last_run_at, last_error, updated_at";

/// A repository as stored.
#[derive(Debug, Clone, FromRow, Serialize, ToSchema)]
pub struct RepoRow {
    /// Identifier.
    pub id: i64,
    /// What git clones.
    pub url: String,
    /// `owner/name`.
    pub name: String,
    /// The indexer that found it (`manual` when added through the API or CLI).
    pub indexer: String,
    /// discovered, queued, fetching, analyzing, analyzed, failed.
    #[sqlx(try_from = "String")]
    #[schema(value_type = String)]
    pub state: RepoState,
    /// The processing job of the current run.
    pub job_id: Option<i64>,
    /// The engine group analysing its files.
    pub group_id: Option<i64>,
    /// The commit analysed.
    pub head_commit: Option<String>,
    /// Size of the clone.
    pub clone_bytes: Option<i64>,
    /// Files in the tree.
    pub files_listed: Option<i32>,
    /// Files with an analyzer.
    pub files_total: Option<i32>,
    /// Why it failed.
    pub error: Option<String>,
    /// Times.
    pub discovered_at: i64,
    /// Cloned.
    pub fetched_at: Option<i64>,
    /// Every file analysed.
    pub analyzed_at: Option<i64>,
    /// Last change.
    pub updated_at: i64,
}

const REPO_COLUMNS: &str = "id, url, name, indexer, state, job_id, group_id, head_commit, \
     clone_bytes, files_listed, files_total, error, discovered_at, fetched_at, analyzed_at, \
     updated_at";

/// A file as stored.
#[derive(Debug, Clone, FromRow, Serialize, ToSchema)]
pub struct FileRow {
    /// Identifier.
    pub id: i64,
    /// Its repository.
    pub repo_id: i64,
    /// Path in the repository.
    pub path: String,
    /// tokei's language name.
    pub language: String,
    /// Size.
    pub bytes: i64,
    /// pending, analyzed, failed.
    #[sqlx(try_from = "String")]
    #[schema(value_type = String)]
    pub state: FileState,
    /// Why an analyzer failed (or the size or time limit).
    pub error: Option<String>,
    /// Lines of code (tokei).
    pub code: Option<i64>,
    /// Comment lines (tokei).
    pub comments: Option<i64>,
    /// Blank lines (tokei).
    pub blanks: Option<i64>,
    /// Source lines (tree-sitter).
    pub sloc: Option<f64>,
    /// Physical lines of code.
    pub ploc: Option<f64>,
    /// Logical lines.
    pub lloc: Option<f64>,
    /// Comment lines.
    pub cloc: Option<f64>,
    /// Functions.
    pub functions: Option<f64>,
    /// Cyclomatic complexity (sum over the file).
    pub cyclomatic: Option<f64>,
    /// Cognitive complexity (sum).
    pub cognitive: Option<f64>,
    /// Maintainability index.
    pub mi: Option<f64>,
    /// Every analyzer's report, JSON.
    pub metrics: Option<String>,
    /// When analysed.
    pub analyzed_at: Option<i64>,
    /// Last change.
    pub updated_at: i64,
}

const FILE_COLUMNS: &str = "id, repo_id, path, language, bytes, state, error, code, comments, \
     blanks, sloc, ploc, lloc, cloc, functions, cyclomatic, cognitive, mi, metrics, analyzed_at, \
     updated_at";

/// Creates an indexer row for each `(name, host, settings, cursor)` missing; existing rows
/// (and their edits) stay.
pub async fn ensure_indexer(
    store: &Store,
    name: &str,
    host: &str,
    settings: &str,
    cursor: &str,
    now: i64,
) -> sqlx::Result<()> {
    dispatch!(store.writer(), pool => {
        sqlx::query(
            "INSERT INTO mining_indexer (name, host, enabled, settings, cursor, updated_at) \
             VALUES ($1, $2, FALSE, $3, $4, $5) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name).bind(host).bind(settings).bind(cursor).bind(now)
        .execute(pool).await?;
    });
    Ok(())
}

/// Every indexer, by name.
pub async fn indexers(store: &Store) -> sqlx::Result<Vec<IndexerRow>> {
    let sql = format!("SELECT {INDEXER_COLUMNS} FROM mining_indexer ORDER BY name");
    dispatch!(store.reader(), pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(pool).await)
}

/// One indexer.
pub async fn indexer(store: &Store, name: &str) -> sqlx::Result<Option<IndexerRow>> {
    let sql = format!("SELECT {INDEXER_COLUMNS} FROM mining_indexer WHERE name = $1");
    dispatch!(store.reader(), pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(name).fetch_optional(pool).await)
}

/// A change to an indexer; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct IndexerChange {
    /// Run it or not.
    pub enabled: Option<bool>,
    /// New settings (checked by the caller).
    pub settings: Option<String>,
    /// New cursor (checked by the caller).
    pub cursor: Option<String>,
    /// Lift a pause (`Some(None)`) or set one.
    pub paused_until: Option<Option<i64>>,
}

/// Applies `change`; `false` when there is no such indexer.
pub async fn change_indexer(
    store: &Store,
    name: &str,
    change: &IndexerChange,
    now: i64,
) -> sqlx::Result<bool> {
    let done = dispatch!(store.writer(), pool => {
        sqlx::query(
            "UPDATE mining_indexer \
             SET enabled = COALESCE($2, enabled), \
                 settings = COALESCE($3, settings), \
                 cursor = COALESCE($4, cursor), \
                 paused_until = CASE WHEN $5 THEN $6 ELSE paused_until END, \
                 updated_at = $7 \
             WHERE name = $1",
        )
        .bind(name)
        .bind(change.enabled)
        .bind(change.settings.as_deref())
        .bind(change.cursor.as_deref())
        .bind(change.paused_until.is_some())
        .bind(change.paused_until.flatten())
        .bind(now)
        .execute(pool).await?.rows_affected()
    });
    Ok(done == 1)
}

/// What one indexer run ends with.
#[derive(Debug)]
pub struct IndexerRun<'a> {
    /// Repositories found.
    pub found: &'a [Found],
    /// The cursor after them (JSON), or `None` to keep it.
    pub cursor: Option<String>,
    /// Do not run before.
    pub paused_until: Option<i64>,
    /// What went wrong, or `None`.
    pub error: Option<String>,
}

/// Stores an indexer's batch: new repositories (one row per URL), the cursor after them,
/// a pause, an error; all in `tx`. Returns how many repositories were new.
pub async fn record_batch(
    tx: &mut Tx,
    name: &str,
    run: &IndexerRun<'_>,
    now: i64,
) -> sqlx::Result<u64> {
    let mut added = 0;
    for found in run.found {
        added += insert_repo(tx, found, name, now).await?.1 as u64;
    }
    dispatch!(tx.conn(), conn => {
        sqlx::query(
            "UPDATE mining_indexer \
             SET cursor = COALESCE($2, cursor), discovered = discovered + $3, \
                 paused_until = $4, last_error = $5, last_run_at = $6, updated_at = $6 \
             WHERE name = $1",
        )
        .bind(name)
        .bind(run.cursor.as_deref())
        .bind(added as i64)
        .bind(run.paused_until)
        .bind(run.error.as_deref())
        .bind(now)
        .execute(conn).await?;
    });
    Ok(added)
}

/// Inserts a repository unless its URL is known; its id and whether it was new.
pub async fn insert_repo(
    tx: &mut Tx,
    found: &Found,
    indexer: &str,
    now: i64,
) -> sqlx::Result<(i64, bool)> {
    let new: Option<i64> = dispatch!(tx.conn(), conn => {
        sqlx::query_scalar(
            "INSERT INTO mining_repo (url, name, indexer, state, discovered_at, updated_at) \
             VALUES ($1, $2, $3, 'discovered', $4, $4) \
             ON CONFLICT (url) DO NOTHING \
             RETURNING id",
        )
        .bind(&found.url).bind(&found.name).bind(indexer).bind(now)
        .fetch_optional(&mut *conn).await?
    });
    if let Some(id) = new {
        return Ok((id, true));
    }
    let id: i64 = dispatch!(tx.conn(), conn => {
        sqlx::query_scalar("SELECT id FROM mining_repo WHERE url = $1")
            .bind(&found.url)
            .fetch_one(conn).await?
    });
    Ok((id, false))
}

/// Repositories waiting for a download.
pub async fn discovered_backlog(store: &Store) -> sqlx::Result<i64> {
    dispatch!(store.reader(), pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM mining_repo WHERE state = 'discovered'")
            .fetch_one(pool).await
    })
}

/// Admits discovered repositories to `queued`, oldest first, while fewer than `cap` are
/// queued; returns their ids (the caller enqueues their processing in `tx`). The feeder
/// row's lock makes concurrent feeders on PostgreSQL take turns; SQLite has one writer.
pub async fn feed(tx: &mut Tx, cap: i64, now: i64) -> sqlx::Result<Vec<i64>> {
    dispatch!(tx.conn(), conn => {
        sqlx::query("UPDATE mining_feeder SET fed_at = $1 WHERE id = 1")
            .bind(now).execute(&mut *conn).await?;
        let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mining_repo WHERE state = 'queued'")
            .fetch_one(&mut *conn).await?;
        let room = cap - queued;
        if room <= 0 {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(
            "UPDATE mining_repo SET state = 'queued', updated_at = $2 \
             WHERE id IN ( \
                 SELECT id FROM mining_repo WHERE state = 'discovered' ORDER BY id LIMIT $1) \
             RETURNING id",
        )
        .bind(room).bind(now)
        .fetch_all(&mut *conn).await
    })
}

/// One repository.
pub async fn repo(store: &Store, id: i64) -> sqlx::Result<Option<RepoRow>> {
    let sql = format!("SELECT {REPO_COLUMNS} FROM mining_repo WHERE id = $1");
    dispatch!(store.reader(), pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(pool).await)
}

/// Moves a repository to `fetching` for processing job `job`.
pub async fn start_fetch(store: &Store, id: i64, job: i64, now: i64) -> sqlx::Result<()> {
    dispatch!(store.writer(), pool => {
        sqlx::query(
            "UPDATE mining_repo SET state = 'fetching', job_id = $2, group_id = NULL, \
                 error = NULL, updated_at = $3 \
             WHERE id = $1",
        )
        .bind(id).bind(job).bind(now)
        .execute(pool).await?;
    });
    Ok(())
}

/// A file to record before analysis.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Path.
    pub path: String,
    /// Language.
    pub language: String,
    /// Size.
    pub bytes: i64,
}

/// A commit to record.
#[derive(Debug, Clone)]
pub struct NewCommit {
    /// Hash.
    pub sha: String,
    /// Committer time, ms.
    pub committed_at: i64,
    /// merge, feature, fix, config, other.
    pub kind: &'static str,
    /// Gunning fog.
    pub readability: Option<f64>,
    /// The first line.
    pub summary: String,
}

/// Replaces a repository's files and commits with fresh ones (re-processing drops the old
/// results first); returns the new files' ids, in the order given.
pub async fn replace_files(
    tx: &mut Tx,
    repo: i64,
    files: &[NewFile],
    commits: &[NewCommit],
    now: i64,
) -> sqlx::Result<Vec<i64>> {
    dispatch!(tx.conn(), conn => {
        sqlx::query("DELETE FROM mining_file WHERE repo_id = $1")
            .bind(repo).execute(&mut *conn).await?;
        sqlx::query("DELETE FROM mining_commit WHERE repo_id = $1")
            .bind(repo).execute(&mut *conn).await?;
    });
    // Every file in one statement (a few parameters, as in `record_files`); rows come back
    // in any order, so they are matched by path (unique within a repository).
    let sql = tx.sql(INSERT_FILES);
    let rows: Vec<(i64, String)> = match tx.conn() {
        Db::Pg(conn) => {
            sqlx::query_as(sql)
                .bind(repo)
                .bind(now)
                .bind(files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>())
                .bind(
                    files
                        .iter()
                        .map(|f| f.language.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(files.iter().map(|f| f.bytes).collect::<Vec<_>>())
                .fetch_all(conn)
                .await?
        }
        Db::Lite(conn) => {
            let rows: Vec<_> = files
                .iter()
                .map(|f| (&f.path, &f.language, f.bytes))
                .collect();
            sqlx::query_as(sql)
                .bind(repo)
                .bind(now)
                .bind(sqlx::types::Json(rows))
                .fetch_all(conn)
                .await?
        }
    };
    let mut by_path: std::collections::HashMap<String, i64> =
        rows.into_iter().map(|(id, path)| (path, id)).collect();
    let ids = files
        .iter()
        .map(|f| by_path.remove(&f.path).ok_or(sqlx::Error::RowNotFound))
        .collect::<sqlx::Result<_>>()?;
    let sql = tx.sql(INSERT_COMMITS);
    match tx.conn() {
        Db::Pg(conn) => {
            sqlx::query(sql)
                .bind(repo)
                .bind(commits.iter().map(|c| c.sha.as_str()).collect::<Vec<_>>())
                .bind(commits.iter().map(|c| c.committed_at).collect::<Vec<_>>())
                .bind(commits.iter().map(|c| c.kind).collect::<Vec<_>>())
                .bind(commits.iter().map(|c| c.readability).collect::<Vec<_>>())
                .bind(
                    commits
                        .iter()
                        .map(|c| c.summary.as_str())
                        .collect::<Vec<_>>(),
                )
                .execute(conn)
                .await?;
        }
        Db::Lite(conn) => {
            let rows: Vec<_> = commits
                .iter()
                .map(|c| (&c.sha, c.committed_at, c.kind, c.readability, &c.summary))
                .collect();
            sqlx::query(sql)
                .bind(repo)
                .bind(sqlx::types::Json(rows))
                .execute(conn)
                .await?;
        }
    }
    Ok(ids)
}

/// [`replace_files`]' files: `$1` the repository, `$2` the time, then the paths, languages
/// and sizes (on SQLite one JSON array of `[path, language, bytes]`).
const INSERT_FILES: Sql = Sql {
    postgres: "INSERT INTO mining_file (repo_id, path, language, bytes, state, updated_at) \
         SELECT $1, f.path, f.language, f.bytes, 'pending', $2 \
         FROM UNNEST($3::text[], $4::text[], $5::bigint[]) AS f (path, language, bytes) \
         RETURNING id, path",
    sqlite: "INSERT INTO mining_file (repo_id, path, language, bytes, state, updated_at) \
         SELECT $1, value ->> 0, value ->> 1, value ->> 2, 'pending', $2 FROM json_each($3) \
         RETURNING id, path",
};

/// [`replace_files`]' commits: `$1` the repository, then their columns (on SQLite one JSON
/// array of `[sha, committed_at, kind, readability, summary]`).
const INSERT_COMMITS: Sql = Sql {
    postgres: "INSERT INTO mining_commit \
             (repo_id, sha, committed_at, kind, readability, summary) \
         SELECT $1, c.sha, c.at, c.kind, c.fog, c.summary \
         FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::float8[], $6::text[]) \
             AS c (sha, at, kind, fog, summary) \
         ON CONFLICT DO NOTHING",
    sqlite: "INSERT INTO mining_commit \
             (repo_id, sha, committed_at, kind, readability, summary) \
         SELECT $1, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
         FROM json_each($2) WHERE true \
         ON CONFLICT DO NOTHING",
};

/// What processing learnt of a clone.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// HEAD.
    pub head: String,
    /// Size on disk.
    pub clone_bytes: i64,
    /// Files in the tree.
    pub files_listed: i32,
    /// Files with an analyzer.
    pub files_total: i32,
}

/// Moves a repository to `analyzing` under `group`, fenced by its processing job.
pub async fn set_analyzing(
    tx: &mut Tx,
    repo: i64,
    job: i64,
    group: Option<i64>,
    fetched: &Fetched,
    now: i64,
) -> sqlx::Result<bool> {
    let state = if group.is_some() {
        RepoState::Analyzing
    } else {
        RepoState::Analyzed
    }
    .as_str();
    let done = dispatch!(tx.conn(), conn => {
        sqlx::query(
            "UPDATE mining_repo \
             SET state = $3, group_id = $4, head_commit = $5, clone_bytes = $6, \
                 files_listed = $7, files_total = $8, fetched_at = $9, updated_at = $9, \
                 analyzed_at = CASE WHEN $4 IS NULL THEN $9 ELSE NULL END \
             WHERE id = $1 AND job_id = $2 AND state = 'fetching'",
        )
        .bind(repo).bind(job).bind(state).bind(group).bind(&fetched.head)
        .bind(fetched.clone_bytes).bind(fetched.files_listed).bind(fetched.files_total)
        .bind(now)
        .execute(conn).await?.rows_affected()
    });
    Ok(done == 1)
}

/// Fails a repository's run (fenced by its processing job).
pub async fn fail_repo(
    store: &Store,
    repo: i64,
    job: i64,
    error: &str,
    now: i64,
) -> sqlx::Result<()> {
    dispatch!(store.writer(), pool => {
        sqlx::query(
            "UPDATE mining_repo SET state = 'failed', error = $3, updated_at = $4 \
             WHERE id = $1 AND job_id = $2",
        )
        .bind(repo).bind(job).bind(error).bind(now)
        .execute(pool).await?;
    });
    Ok(())
}

/// Marks a repository analysed once its group ended (fenced by the run's processing job).
pub async fn finish_repo(store: &Store, repo: i64, job: i64, now: i64) -> sqlx::Result<bool> {
    let done = dispatch!(store.writer(), pool => {
        sqlx::query(
            "UPDATE mining_repo SET state = 'analyzed', analyzed_at = $3, updated_at = $3 \
             WHERE id = $1 AND job_id = $2 AND state = 'analyzing'",
        )
        .bind(repo).bind(job).bind(now)
        .execute(pool).await?.rows_affected()
    });
    Ok(done == 1)
}

/// One file's outcome.
#[derive(Debug, Clone, Default)]
pub struct FileResult {
    /// The file.
    pub id: i64,
    /// `None`: analysed; else why not.
    pub error: Option<String>,
    /// Its columns.
    pub summary: crate::analyzer::Summary,
    /// Every report, JSON.
    pub metrics: Option<String>,
}

/// Records analyses, one statement for up to [`RECORD_ROWS`] files (a task's results are
/// one statement, not one round trip a file). A file re-listed meanwhile has a new id, so
/// an old run's results land nowhere.
///
/// On PostgreSQL the rows travel as one array a column (`UNNEST`), one statement text; on
/// SQLite as rows of anonymous parameters. With numbered ones (`$n`) sqlx looked each of a
/// chunk's 961 parameters up by a linear search of their names
/// (`sqlite3_bind_parameter_name`, quadratic in the row count): a fifth of the database
/// thread's CPU in `bench mining`.
pub async fn record_files(
    store: &Store,
    results: &[FileResult],
    now: i64,
) -> conveyor_queue::Result<()> {
    let mut tx = store.begin().await?;
    for chunk in results.chunks(RECORD_ROWS) {
        let state = |r: &FileResult| {
            if r.error.is_some() && r.metrics.is_none() {
                FileState::Failed
            } else {
                FileState::Analyzed
            }
            .as_str()
        };
        match tx.conn() {
            Db::Pg(conn) => {
                let ints = |f: fn(&Summary) -> Option<i64>| -> Vec<Option<i64>> {
                    chunk.iter().map(|r| f(&r.summary)).collect()
                };
                let reals = |f: fn(&Summary) -> Option<f64>| -> Vec<Option<f64>> {
                    chunk.iter().map(|r| f(&r.summary)).collect()
                };
                sqlx::query(RECORD_FILES_POSTGRES)
                    .bind(now)
                    .bind(chunk.iter().map(|r| r.id).collect::<Vec<_>>())
                    .bind(chunk.iter().map(state).collect::<Vec<_>>())
                    .bind(chunk.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>())
                    .bind(ints(|s| s.code))
                    .bind(ints(|s| s.comments))
                    .bind(ints(|s| s.blanks))
                    .bind(reals(|s| s.sloc))
                    .bind(reals(|s| s.ploc))
                    .bind(reals(|s| s.lloc))
                    .bind(reals(|s| s.cloc))
                    .bind(reals(|s| s.functions))
                    .bind(reals(|s| s.cyclomatic))
                    .bind(reals(|s| s.cognitive))
                    .bind(reals(|s| s.mi))
                    .bind(
                        chunk
                            .iter()
                            .map(|r| r.metrics.as_deref())
                            .collect::<Vec<_>>(),
                    )
                    .execute(conn)
                    .await
                    .map_err(conveyor_queue::Error::Database)?;
            }
            Db::Lite(conn) => {
                // Padded to a multiple of 32 rows (NULL ids match nothing), so a few
                // statement texts stay prepared whatever the task's size.
                let padded = chunk.len().div_ceil(32) * 32;
                let sql = record_files_sqlite(padded);
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(now);
                for r in chunk {
                    let s = &r.summary;
                    query = query
                        .bind(r.id)
                        .bind(state(r))
                        .bind(r.error.as_deref())
                        .bind(s.code)
                        .bind(s.comments)
                        .bind(s.blanks)
                        .bind(s.sloc)
                        .bind(s.ploc)
                        .bind(s.lloc)
                        .bind(s.cloc)
                        .bind(s.functions)
                        .bind(s.cyclomatic)
                        .bind(s.cognitive)
                        .bind(s.mi)
                        .bind(r.metrics.as_deref());
                }
                for _ in chunk.len()..padded {
                    for _ in 0..15 {
                        query = query.bind(None::<i64>);
                    }
                }
                query
                    .execute(conn)
                    .await
                    .map_err(conveyor_queue::Error::Database)?;
            }
        }
    }
    tx.commit().await
}

/// Most files one statement of [`record_files`] records (a task's, at most).
pub const RECORD_ROWS: usize = 256;

/// [`record_files`]' statement on PostgreSQL: `$1` the time, then one array a column.
const RECORD_FILES_POSTGRES: &str = "UPDATE mining_file \
     SET state = r.state, error = r.error, code = r.code, comments = r.comments, \
         blanks = r.blanks, sloc = r.sloc, ploc = r.ploc, lloc = r.lloc, \
         cloc = r.cloc, functions = r.functions, cyclomatic = r.cyclomatic, \
         cognitive = r.cognitive, mi = r.mi, metrics = r.metrics, \
         analyzed_at = $1, updated_at = $1 \
     FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], \
                 $7::bigint[], $8::float8[], $9::float8[], $10::float8[], $11::float8[], \
                 $12::float8[], $13::float8[], $14::float8[], $15::float8[], $16::text[]) \
         AS r (id, state, error, code, comments, blanks, sloc, ploc, lloc, cloc, \
               functions, cyclomatic, cognitive, mi, metrics) \
     WHERE mining_file.id = r.id";

/// [`record_files`]' statement on SQLite for `rows` rows: the time, then 15 values a row,
/// every parameter an anonymous `?` (sqlx finds numbered ones by a linear search of their
/// names, quadratic in their number; rows in one JSON text were re-read for each column).
fn record_files_sqlite(rows: usize) -> String {
    let row = format!("({})", ["?"; 15].join(", "));
    format!(
        "WITH t (now) AS (SELECT ?), \
              r (id, state, error, code, comments, blanks, sloc, ploc, lloc, cloc, \
                 functions, cyclomatic, cognitive, mi, metrics) AS (VALUES {}) \
         UPDATE mining_file \
         SET state = r.state, error = r.error, code = r.code, comments = r.comments, \
             blanks = r.blanks, sloc = r.sloc, ploc = r.ploc, lloc = r.lloc, \
             cloc = r.cloc, functions = r.functions, cyclomatic = r.cyclomatic, \
             cognitive = r.cognitive, mi = r.mi, metrics = r.metrics, \
             analyzed_at = t.now, updated_at = t.now \
         FROM r, t WHERE mining_file.id = r.id",
        vec![row; rows].join(", ")
    )
}

/// Filters of the repository list.
#[derive(Debug, Default, Clone)]
pub struct RepoFilter {
    /// One state.
    pub state: Option<String>,
    /// Found by this indexer.
    pub indexer: Option<String>,
    /// Having files in this language (case-insensitive).
    pub language: Option<String>,
    /// Ids below this (the cursor; newest first).
    pub before: Option<i64>,
}

/// A page of repositories, newest first.
pub async fn repos(store: &Store, filter: &RepoFilter, limit: i64) -> sqlx::Result<Vec<RepoRow>> {
    let sql = format!(
        "SELECT {REPO_COLUMNS} FROM mining_repo r \
         WHERE ($1 IS NULL OR r.state = $1) \
           AND ($2 IS NULL OR r.indexer = $2) \
           AND ($3 IS NULL OR EXISTS (SELECT 1 FROM mining_file f \
                                      WHERE f.repo_id = r.id AND LOWER(f.language) = LOWER($3))) \
           AND ($4 IS NULL OR r.id < $4) \
         ORDER BY r.id DESC LIMIT $5"
    );
    dispatch!(store.reader(), pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(filter.state.as_deref()).bind(filter.indexer.as_deref())
            .bind(filter.language.as_deref()).bind(filter.before).bind(limit)
            .fetch_all(pool).await
    })
}

/// Filters of the file list.
#[derive(Debug, Default, Clone)]
pub struct FileFilter {
    /// Of this repository.
    pub repo: Option<i64>,
    /// In this language (case-insensitive).
    pub language: Option<String>,
    /// pending, analyzed or failed.
    pub state: Option<String>,
    /// Ids above this (the cursor; oldest first).
    pub after: Option<i64>,
}

/// A page of files, in id order.
pub async fn files(store: &Store, filter: &FileFilter, limit: i64) -> sqlx::Result<Vec<FileRow>> {
    let sql = format!(
        "SELECT {FILE_COLUMNS} FROM mining_file \
         WHERE ($1 IS NULL OR repo_id = $1) \
           AND ($2 IS NULL OR LOWER(language) = LOWER($2)) \
           AND ($3 IS NULL OR state = $3) \
           AND ($4 IS NULL OR id > $4) \
         ORDER BY id LIMIT $5"
    );
    dispatch!(store.reader(), pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(filter.repo).bind(filter.language.as_deref())
            .bind(filter.state.as_deref()).bind(filter.after).bind(limit)
            .fetch_all(pool).await
    })
}

/// How many files `filter` selects (its cursor ignored).
pub async fn count_files(store: &Store, filter: &FileFilter) -> sqlx::Result<i64> {
    dispatch!(store.reader(), pool => {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM mining_file \
             WHERE ($1 IS NULL OR repo_id = $1) \
               AND ($2 IS NULL OR LOWER(language) = LOWER($2)) \
               AND ($3 IS NULL OR state = $3)",
        )
        .bind(filter.repo).bind(filter.language.as_deref()).bind(filter.state.as_deref())
        .fetch_one(pool).await
    })
}

/// Files of a repository not analysed yet.
pub async fn pending_files(store: &Store, repo: i64) -> sqlx::Result<i64> {
    dispatch!(store.reader(), pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM mining_file WHERE repo_id = $1 AND state = 'pending'")
            .bind(repo).fetch_one(pool).await
    })
}

/// One file.
pub async fn file(store: &Store, id: i64) -> sqlx::Result<Option<FileRow>> {
    let sql = format!("SELECT {FILE_COLUMNS} FROM mining_file WHERE id = $1");
    dispatch!(store.reader(), pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(pool).await)
}

/// Aggregates of files, per language.
#[derive(Debug, Clone, FromRow, Serialize, ToSchema)]
pub struct LanguageTotals {
    /// tokei's name.
    pub language: String,
    /// Files.
    pub files: i64,
    /// Analysed files.
    pub analyzed: i64,
    /// Failed files.
    pub failed: i64,
    /// Repositories with such files.
    pub repositories: i64,
    /// Bytes.
    pub bytes: i64,
    /// Lines of code (tokei).
    pub code: Option<i64>,
    /// Comment lines (tokei).
    pub comments: Option<i64>,
    /// Blank lines (tokei).
    pub blanks: Option<i64>,
    /// Functions (tree-sitter).
    pub functions: Option<f64>,
    /// Cyclomatic complexity summed over files.
    pub cyclomatic: Option<f64>,
    /// Cognitive complexity summed.
    pub cognitive: Option<f64>,
    /// Mean maintainability index of files that have one.
    pub mi_mean: Option<f64>,
}

/// Per-language totals, of one repository or of all.
pub async fn language_totals(
    store: &Store,
    repo: Option<i64>,
) -> sqlx::Result<Vec<LanguageTotals>> {
    let sql = "SELECT language, COUNT(*) AS files, \
             SUM(CASE WHEN state = 'analyzed' THEN 1 ELSE 0 END) AS analyzed, \
             SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failed, \
             COUNT(DISTINCT repo_id) AS repositories, CAST(SUM(bytes) AS BIGINT) AS bytes, \
             CAST(SUM(code) AS BIGINT) AS code, CAST(SUM(comments) AS BIGINT) AS comments, \
             CAST(SUM(blanks) AS BIGINT) AS blanks, SUM(functions) AS functions, \
             SUM(cyclomatic) AS cyclomatic, SUM(cognitive) AS cognitive, AVG(mi) AS mi_mean \
         FROM mining_file WHERE ($1 IS NULL OR repo_id = $1) \
         GROUP BY language ORDER BY SUM(bytes) DESC, language";
    dispatch!(store.reader(), pool => sqlx::query_as(sql).bind(repo).fetch_all(pool).await)
}

/// Commits of a repository by kind, with their mean readability.
pub async fn commit_kinds(
    store: &Store,
    repo: i64,
) -> sqlx::Result<Vec<(String, i64, Option<f64>)>> {
    dispatch!(store.reader(), pool => {
        sqlx::query_as(
            "SELECT kind, COUNT(*), AVG(readability) FROM mining_commit \
             WHERE repo_id = $1 GROUP BY kind ORDER BY kind",
        )
        .bind(repo).fetch_all(pool).await
    })
}

/// Counts of repositories by state and of files by state.
pub async fn counts(store: &Store) -> sqlx::Result<(Vec<(String, i64)>, Vec<(String, i64)>)> {
    dispatch!(store.reader(), pool => {
        let repos = sqlx::query_as("SELECT state, COUNT(*) FROM mining_repo GROUP BY state ORDER BY state")
            .fetch_all(pool).await?;
        let files = sqlx::query_as("SELECT state, COUNT(*) FROM mining_file GROUP BY state ORDER BY state")
            .fetch_all(pool).await?;
        Ok((repos, files))
    })
}

/// Per time bucket since `since`: repositories discovered, fetched, analysed, and files
/// analysed, as `(bucket start, discovered, fetched, analyzed, files)`.
pub async fn timeline(
    store: &Store,
    since: i64,
    bucket: i64,
) -> sqlx::Result<Vec<(i64, i64, i64, i64, i64)>> {
    let sql = "SELECT t, SUM(d), SUM(f), SUM(a), SUM(n) FROM ( \
             SELECT (discovered_at / $2) * $2 AS t, 1 AS d, 0 AS f, 0 AS a, 0 AS n \
               FROM mining_repo WHERE discovered_at >= $1 \
             UNION ALL SELECT (fetched_at / $2) * $2, 0, 1, 0, 0 \
               FROM mining_repo WHERE fetched_at >= $1 \
             UNION ALL SELECT (analyzed_at / $2) * $2, 0, 0, 1, 0 \
               FROM mining_repo WHERE analyzed_at >= $1 \
             UNION ALL SELECT (analyzed_at / $2) * $2, 0, 0, 0, 1 \
               FROM mining_file WHERE analyzed_at >= $1 \
         ) AS events GROUP BY t ORDER BY t";
    let rows: Vec<(i64, i64, i64, i64, i64)> = dispatch!(store.reader(), pool => {
        sqlx::query_as(sql).bind(since).bind(bucket).fetch_all(pool).await?
    });
    Ok(rows)
}

/// Repositories and files changed at or after `since` (at most `limit` of each), for the
/// live stream.
pub async fn changed_since(
    store: &Store,
    since: i64,
    limit: i64,
) -> sqlx::Result<(
    Vec<RepoRow>,
    Vec<(i64, i64, String, String, String, Option<String>, i64)>,
)> {
    let repo_sql = format!(
        "SELECT {REPO_COLUMNS} FROM mining_repo WHERE updated_at >= $1 ORDER BY updated_at LIMIT $2"
    );
    dispatch!(store.reader(), pool => {
        let repos = sqlx::query_as(sqlx::AssertSqlSafe(repo_sql.as_str())).bind(since).bind(limit).fetch_all(pool).await?;
        let files = sqlx::query_as(
            "SELECT id, repo_id, path, language, state, error, updated_at FROM mining_file \
             WHERE updated_at >= $1 AND state <> 'pending' ORDER BY updated_at LIMIT $2",
        )
        .bind(since).bind(limit).fetch_all(pool).await?;
        Ok((repos, files))
    })
}

/// Re-queues a repository for processing; `false` when it is being processed now.
pub async fn requeue(tx: &mut Tx, repo: i64, now: i64) -> sqlx::Result<bool> {
    let done = dispatch!(tx.conn(), conn => {
        sqlx::query(
            "UPDATE mining_repo SET state = 'queued', updated_at = $2 \
             WHERE id = $1 AND state IN ('discovered', 'analyzed', 'failed')",
        )
        .bind(repo).bind(now)
        .execute(conn).await?.rows_affected()
    });
    Ok(done == 1)
}

/// An API key as stored (without the key).
#[derive(Debug, Clone, FromRow, Serialize, ToSchema)]
pub struct ApiKeyRow {
    /// Identifier.
    pub id: i64,
    /// Who it is for.
    pub name: String,
    /// Requests a minute allowed.
    pub per_minute: i32,
    /// May change indexers and add repositories.
    pub admin: bool,
    /// Created.
    pub created_at: i64,
    /// Revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// Stores a key's hash.
pub async fn insert_key(
    store: &Store,
    name: &str,
    hash: &str,
    per_minute: i32,
    admin: bool,
    now: i64,
) -> sqlx::Result<i64> {
    dispatch!(store.writer(), pool => {
        sqlx::query_scalar(
            "INSERT INTO mining_api_key (name, key_hash, per_minute, admin, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name).bind(hash).bind(per_minute).bind(admin).bind(now)
        .fetch_one(pool).await
    })
}

/// The live key with this hash.
pub async fn key_by_hash(store: &Store, hash: &str) -> sqlx::Result<Option<ApiKeyRow>> {
    dispatch!(store.reader(), pool => {
        sqlx::query_as(
            "SELECT id, name, per_minute, admin, created_at, revoked_at FROM mining_api_key \
             WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash).fetch_optional(pool).await
    })
}

/// Whether any live key exists.
pub async fn any_key(store: &Store) -> sqlx::Result<bool> {
    let n: i64 = dispatch!(store.reader(), pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM mining_api_key WHERE revoked_at IS NULL")
            .fetch_one(pool).await?
    });
    Ok(n > 0)
}
