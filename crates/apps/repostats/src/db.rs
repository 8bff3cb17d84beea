//! repostats' rows: the same SQL on both backends.

use conveyor_queue::{Store, dispatch};

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

/// The current version.
pub async fn version(store: &Store) -> sqlx::Result<i64> {
    dispatch!(store.reader(), pool => {
        sqlx::query_scalar("SELECT version FROM repostats_state WHERE id = 1")
            .fetch_one(pool)
            .await
    })
}

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
    let sql = match store.backend() {
        conveyor_queue::Backend::Postgres => {
            "SELECT item, languages, languages_at FROM repostats_repo \
             WHERE id IN (SELECT value::bigint FROM json_array_elements_text($1::json))"
        }
        conveyor_queue::Backend::Sqlite => {
            "SELECT item, languages, languages_at FROM repostats_repo \
             WHERE id IN (SELECT value FROM json_each($1))"
        }
    };
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
