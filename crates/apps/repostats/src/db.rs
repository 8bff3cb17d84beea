//! repostats' rows: the same SQL on both backends.

use conveyor_queue::{Sql, Store, Tx, dispatch};

use crate::model::{Item, Languages};
use crate::snapshot::{RepoView, Snapshot};

/// Records a refresh: the items listed (upserted), which are now the newest, and a new
/// version. Returns the ids whose languages are missing.
pub async fn record_listing(
    store: &Store,
    items: &[Item],
    now: i64,
) -> sqlx::Result<Vec<(i64, String)>> {
    let mut tx = store.begin().await.map_err(into_sqlx)?;
    for item in items {
        let json = serde_json::to_string(item).expect("items serialise");
        dispatch!(tx.conn(), conn => {
            sqlx::query(
                "INSERT INTO repostats_repo (id, full_name, created_at, item, listed_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET full_name = excluded.full_name, \
                     item = excluded.item, listed_at = excluded.listed_at",
            )
            .bind(item.id)
            .bind(&item.full_name)
            .bind(&item.created_at)
            .bind(json)
            .bind(now)
            .execute(conn)
            .await?;
        });
    }
    let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
    dispatch!(tx.conn(), conn => {
        sqlx::query(
            "UPDATE repostats_state SET version = version + 1, current_ids = $1, refreshed_at = $2 \
             WHERE id = 1",
        )
        .bind(serde_json::to_string(&ids).expect("ids serialise"))
        .bind(now)
        .execute(conn)
        .await?;
    });
    let missing: Vec<(i64, String)> = {
        let mut missing = Vec::new();
        for item in items {
            let row: Option<(Option<String>,)> = dispatch!(tx.conn(), conn => {
                sqlx::query_as("SELECT languages FROM repostats_repo WHERE id = $1")
                    .bind(item.id)
                    .fetch_optional(conn)
                    .await?
            });
            if row.is_none_or(|r| r.0.is_none()) {
                missing.push((item.id, item.full_name.clone()));
            }
        }
        missing
    };
    tx.commit().await.map_err(into_sqlx)?;
    Ok(missing)
}

fn into_sqlx(error: conveyor_queue::Error) -> sqlx::Error {
    match error {
        conveyor_queue::Error::Database(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// The stored ETag of a repository's languages.
pub async fn languages_etag(store: &Store, id: i64) -> sqlx::Result<Option<String>> {
    let row: Option<(Option<String>,)> = dispatch!(store.reader(), pool => {
        sqlx::query_as("SELECT languages_etag FROM repostats_repo WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?
    });
    Ok(row.and_then(|r| r.0))
}

/// Stores a repository's languages (or, with `None`, only that they are still fresh) and
/// bumps the version.
pub async fn record_languages(
    store: &Store,
    id: i64,
    languages: Option<(&Languages, Option<&str>)>,
    now: i64,
) -> sqlx::Result<()> {
    let mut tx = store.begin().await.map_err(into_sqlx)?;
    match languages {
        Some((languages, etag)) => {
            let json = serde_json::to_string(languages).expect("languages serialise");
            dispatch!(tx.conn(), conn => {
                sqlx::query(
                    "UPDATE repostats_repo SET languages = $2, languages_etag = $3, languages_at = $4 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(json)
                .bind(etag)
                .bind(now)
                .execute(conn)
                .await?;
            });
        }
        None => {
            dispatch!(tx.conn(), conn => {
                sqlx::query("UPDATE repostats_repo SET languages_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(now)
                    .execute(conn)
                    .await?;
            });
        }
    }
    dispatch!(tx.conn(), conn => {
        sqlx::query("UPDATE repostats_state SET version = version + 1 WHERE id = 1")
            .execute(conn)
            .await?;
    });
    tx.commit().await.map_err(into_sqlx)
}

/// When the snapshot was last refreshed (ms), if ever.
pub async fn refreshed_at(store: &Store) -> sqlx::Result<Option<i64>> {
    dispatch!(store.reader(), pool => {
        sqlx::query_scalar("SELECT refreshed_at FROM repostats_state WHERE id = 1")
            .fetch_optional(pool)
            .await
            .map(Option::flatten)
    })
}

/// The current version.
pub async fn version(store: &Store) -> sqlx::Result<i64> {
    dispatch!(store.reader(), pool => {
        sqlx::query_scalar("SELECT version FROM repostats_state WHERE id = 1")
            .fetch_one(pool)
            .await
    })
}

/// The rows of a list of ids (a JSON array).
const SNAPSHOT_ROWS: Sql = Sql {
    postgres: "SELECT item, languages, languages_at FROM repostats_repo \
               WHERE id IN (SELECT value::bigint FROM json_array_elements_text($1::json))",
    sqlite: "SELECT item, languages, languages_at FROM repostats_repo \
             WHERE id IN (SELECT value FROM json_each($1))",
};

/// Builds the snapshot of the current version: the newest repositories, newest first
/// (by `created_at`, then id).
pub async fn load_snapshot(store: &Store) -> sqlx::Result<Snapshot> {
    type Row = (i64, Option<i64>, String);
    let (version, refreshed_at, ids): Row = dispatch!(store.reader(), pool => {
        sqlx::query_as("SELECT version, refreshed_at, current_ids FROM repostats_state WHERE id = 1")
            .fetch_one(pool)
            .await?
    });
    let ids: Vec<i64> = serde_json::from_str(&ids).unwrap_or_default();
    let sql = store.sql(SNAPSHOT_ROWS);
    let rows: Vec<(String, Option<String>, Option<i64>)> = dispatch!(store.reader(), pool => {
        sqlx::query_as(sql)
        .bind(serde_json::to_string(&ids).expect("ids serialise"))
        .fetch_all(pool)
        .await?
    });
    let mut repos: Vec<RepoView> = rows
        .into_iter()
        .filter_map(|(item, languages, at)| {
            let item: Item = serde_json::from_str(&item).ok()?;
            let languages: Option<Languages> =
                languages.and_then(|l| serde_json::from_str(&l).ok());
            Some(RepoView::new(item, languages, at))
        })
        .collect();
    repos.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    Ok(Snapshot {
        version,
        refreshed_at,
        repos,
        rendered: Default::default(),
    })
}

/// A token's bucket as stored.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct RateRow {
    /// Requests a window.
    pub budget: i64,
    /// Left in this window.
    pub remaining: i64,
    /// When the window resets (ms).
    pub reset_at: i64,
    /// No request before this (ms; 0: none).
    pub blocked_until: i64,
}

/// A token's bucket, locked for the transaction on PostgreSQL (against other workers);
/// SQLite's single writer already holds the database.
const RATE_ROW: Sql = Sql {
    postgres: "SELECT budget, remaining, reset_at, blocked_until FROM repostats_rate \
               WHERE token = $1 AND bucket = $2 FOR UPDATE",
    sqlite: "SELECT budget, remaining, reset_at, blocked_until FROM repostats_rate \
             WHERE token = $1 AND bucket = $2",
};

/// A token's bucket, if known (locked for `tx`).
pub async fn rate_row(tx: &mut Tx, token: &str, bucket: &str) -> sqlx::Result<Option<RateRow>> {
    let sql = tx.sql(RATE_ROW);
    dispatch!(tx.conn(), conn => {
        sqlx::query_as(sql).bind(token).bind(bucket).fetch_optional(conn).await
    })
}

/// Records the first request of a bucket nothing is known of (reset 0 marks the window as
/// unknown, so the answer's header sets it); false when another worker's probe got there
/// first.
pub async fn rate_probe(
    tx: &mut Tx,
    token: &str,
    bucket: &str,
    assumed: i64,
    blocked_until: i64,
    now: i64,
) -> sqlx::Result<bool> {
    let inserted: Option<(String,)> = dispatch!(tx.conn(), conn => {
        sqlx::query_as(
            "INSERT INTO repostats_rate \
                 (token, bucket, budget, remaining, reset_at, blocked_until, updated_at) \
             VALUES ($1, $2, $3, 0, 0, $4, $5) ON CONFLICT (token, bucket) DO NOTHING \
             RETURNING token",
        )
        .bind(token)
        .bind(bucket)
        .bind(assumed)
        .bind(blocked_until)
        .bind(now)
        .fetch_optional(conn)
        .await?
    });
    Ok(inserted.is_some())
}

/// Stores a bucket after one unit was taken from it.
pub async fn rate_take(
    tx: &mut Tx,
    token: &str,
    bucket: &str,
    row: RateRow,
    now: i64,
) -> sqlx::Result<()> {
    dispatch!(tx.conn(), conn => {
        sqlx::query(
            "INSERT INTO repostats_rate (token, bucket, budget, remaining, reset_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (token, bucket) DO UPDATE SET remaining = excluded.remaining, \
                 reset_at = excluded.reset_at, updated_at = excluded.updated_at",
        )
        .bind(token)
        .bind(bucket)
        .bind(row.budget)
        .bind(row.remaining)
        .bind(row.reset_at)
        .bind(now)
        .execute(conn)
        .await?;
    });
    Ok(())
}

/// A bucket's strikes, remaining and reset, locked on PostgreSQL: a hand-out between this
/// read and the answer's write would be lost.
const RATE_STRIKES: Sql = Sql {
    postgres: "SELECT CAST(strikes AS BIGINT), remaining, reset_at FROM repostats_rate \
               WHERE token = $1 AND bucket = $2 FOR UPDATE",
    sqlite: "SELECT CAST(strikes AS BIGINT), remaining, reset_at FROM repostats_rate \
             WHERE token = $1 AND bucket = $2",
};

/// A bucket's strikes, remaining and reset (locked for `tx`).
pub async fn rate_strikes(
    tx: &mut Tx,
    token: &str,
    bucket: &str,
) -> sqlx::Result<Option<(i64, i64, i64)>> {
    let sql = tx.sql(RATE_STRIKES);
    dispatch!(tx.conn(), conn => {
        sqlx::query_as(sql).bind(token).bind(bucket).fetch_optional(conn).await
    })
}

/// Gives a unit back (an answer that GitHub does not count) and clears the strikes.
pub async fn rate_give_back(tx: &mut Tx, token: &str, bucket: &str) -> sqlx::Result<()> {
    dispatch!(tx.conn(), conn => {
        sqlx::query(
            "UPDATE repostats_rate SET remaining = remaining + 1, strikes = 0 \
             WHERE token = $1 AND bucket = $2",
        )
        .bind(token)
        .bind(bucket)
        .execute(conn)
        .await?;
    });
    Ok(())
}

/// What an answer's headers stated (each only if present).
#[derive(Debug, Clone, Copy)]
pub struct Stated {
    /// Left in the window.
    pub remaining: Option<i64>,
    /// When it resets (ms).
    pub reset_at: Option<i64>,
    /// Requests a window.
    pub budget: Option<i64>,
}

/// Stores what an answer said of its bucket.
pub async fn rate_record(
    tx: &mut Tx,
    token: &str,
    bucket: &str,
    stated: Stated,
    blocked_until: i64,
    strikes: i64,
    now: i64,
) -> sqlx::Result<()> {
    dispatch!(tx.conn(), conn => {
        sqlx::query(
            "UPDATE repostats_rate \
             SET remaining = COALESCE($3, remaining), reset_at = COALESCE($4, reset_at), \
                 blocked_until = $5, strikes = $6, updated_at = $7, budget = COALESCE($8, budget) \
             WHERE token = $1 AND bucket = $2",
        )
        .bind(token)
        .bind(bucket)
        .bind(stated.remaining)
        .bind(stated.reset_at)
        .bind(blocked_until)
        .bind(strikes as i32)
        .bind(now)
        .bind(stated.budget)
        .execute(conn)
        .await?;
    });
    Ok(())
}

/// The budget as stored: token, bucket, remaining, reset (ms), blocked until (ms).
///
/// # Errors
/// The database's.
pub async fn budget(store: &Store) -> sqlx::Result<Vec<(String, String, i64, i64, i64)>> {
    dispatch!(store.reader(), pool => {
        sqlx::query_as(
            "SELECT token, bucket, remaining, reset_at, blocked_until FROM repostats_rate ORDER BY token, bucket",
        )
        .fetch_all(pool)
        .await
    })
}
