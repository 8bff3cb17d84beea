//! MiniTwit's SQL, the same text on both backends (expanded once per driver by `dispatch!`).
//! Reads go to the store's readers, writes to its writer.

use conveyor_queue::{Db, Sql, Store, dispatch};
use sqlx::FromRow;

/// A user as the pages need them.
#[derive(Debug, Clone, FromRow)]
pub struct User {
    /// Identifier.
    pub user_id: i64,
    /// Unique name, may contain spaces.
    pub username: String,
    /// Address (for the Gravatar picture).
    pub email: String,
}

/// A message with its author, newest first in every list.
#[derive(Debug, Clone, FromRow)]
pub struct Message {
    /// Identifier.
    pub message_id: i64,
    /// The text as posted.
    pub text: String,
    /// Unix seconds.
    pub pub_date: i64,
    /// The author's name.
    pub username: String,
    /// The author's address.
    pub email: String,
}

/// Whose messages a timeline shows.
#[derive(Debug, Clone, Copy)]
pub enum Timeline {
    /// Everyone's.
    Public,
    /// One user's own.
    User(i64),
    /// A user's own and those of everyone they follow.
    Personal(i64),
}

const MESSAGE_COLUMNS: &str = "SELECT m.message_id, m.text, m.pub_date, u.username, u.email \
     FROM minitwit_message m JOIN minitwit_user u ON u.user_id = m.author_id \
     WHERE m.flagged = FALSE ";
const NEWEST_FIRST: &str = " ORDER BY m.pub_date DESC, m.message_id DESC LIMIT $1 OFFSET $2";

/// Messages of a timeline, `limit` of them after skipping `offset`.
pub async fn timeline(
    store: &Store,
    which: Timeline,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<Message>> {
    let (filter, user) = match which {
        Timeline::Public => ("", None),
        Timeline::User(id) => ("AND m.author_id = $3", Some(id)),
        Timeline::Personal(id) => (
            "AND (m.author_id = $3 OR m.author_id IN \
                 (SELECT whom_id FROM minitwit_follower WHERE who_id = $3))",
            Some(id),
        ),
    };
    let sql = format!("{MESSAGE_COLUMNS}{filter}{NEWEST_FIRST}");
    dispatch!(store.reader(), pool => {
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(limit).bind(offset);
        if let Some(id) = user {
            query = query.bind(id);
        }
        query.fetch_all(pool).await
    })
}

/// The user called `username`.
pub async fn user_by_name(store: &Store, username: &str) -> sqlx::Result<Option<User>> {
    dispatch!(store.reader(), pool => {
        sqlx::query_as("SELECT user_id, username, email FROM minitwit_user WHERE username = $1")
            .bind(username)
            .fetch_optional(pool)
            .await
    })
}

/// The id and stored password hash of `username`.
pub async fn credentials(store: &Store, username: &str) -> sqlx::Result<Option<(i64, String)>> {
    dispatch!(store.reader(), pool => {
        sqlx::query_as("SELECT user_id, pw_hash FROM minitwit_user WHERE username = $1")
            .bind(username)
            .fetch_optional(pool)
            .await
    })
}

/// Adds a user; `false` when the name is taken.
pub async fn add_user(
    store: &Store,
    username: &str,
    email: &str,
    pw_hash: &str,
) -> sqlx::Result<bool> {
    let inserted = dispatch!(store.writer(), pool => {
        sqlx::query(
            "INSERT INTO minitwit_user (username, email, pw_hash) VALUES ($1, $2, $3) \
             ON CONFLICT (username) DO NOTHING",
        )
        .bind(username)
        .bind(email)
        .bind(pw_hash)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(inserted == 1)
}

/// Replaces a user's password hash (an upgrade to the current parameters).
pub async fn set_password_hash(store: &Store, user_id: i64, pw_hash: &str) -> sqlx::Result<()> {
    dispatch!(store.writer(), pool => {
        sqlx::query("UPDATE minitwit_user SET pw_hash = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(pw_hash)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Posts a message.
pub async fn add_message(store: &Store, author_id: i64, text: &str, now: i64) -> sqlx::Result<()> {
    dispatch!(store.writer(), pool => {
        sqlx::query(
            "INSERT INTO minitwit_message (author_id, text, pub_date, flagged) \
             VALUES ($1, $2, $3, FALSE)",
        )
        .bind(author_id)
        .bind(text)
        .bind(now)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Flags (hides) or unflags messages; returns how many exist.
pub async fn set_flagged(store: &Store, ids: &[i64], flagged: bool) -> sqlx::Result<u64> {
    let ids = serde_json::to_string(ids).expect("integers serialise");
    let changed = match store.writer() {
        Db::Pg(pool) => sqlx::query(
            "UPDATE minitwit_message SET flagged = $2 \
                 WHERE message_id IN (SELECT jsonb_array_elements_text($1::jsonb)::bigint)",
        )
        .bind(ids)
        .bind(flagged)
        .execute(pool)
        .await?
        .rows_affected(),
        Db::Lite(pool) => sqlx::query(
            "UPDATE minitwit_message SET flagged = $2 \
                 WHERE message_id IN (SELECT value FROM json_each($1))",
        )
        .bind(ids)
        .bind(flagged)
        .execute(pool)
        .await?
        .rows_affected(),
    };
    Ok(changed)
}

/// `who` follows `whom` (once, however often asked).
pub async fn follow(store: &Store, who: i64, whom: i64) -> sqlx::Result<()> {
    dispatch!(store.writer(), pool => {
        sqlx::query(
            "INSERT INTO minitwit_follower (who_id, whom_id) VALUES ($1, $2) \
             ON CONFLICT (who_id, whom_id) DO NOTHING",
        )
        .bind(who)
        .bind(whom)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// `who` no longer follows `whom` (fine if they did not).
pub async fn unfollow(store: &Store, who: i64, whom: i64) -> sqlx::Result<()> {
    dispatch!(store.writer(), pool => {
        sqlx::query("DELETE FROM minitwit_follower WHERE who_id = $1 AND whom_id = $2")
            .bind(who)
            .bind(whom)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Whether `who` follows `whom`.
pub async fn follows(store: &Store, who: i64, whom: i64) -> sqlx::Result<bool> {
    let row: Option<(i64,)> = dispatch!(store.reader(), pool => {
        sqlx::query_as("SELECT who_id FROM minitwit_follower WHERE who_id = $1 AND whom_id = $2")
            .bind(who)
            .bind(whom)
            .fetch_optional(pool)
            .await?
    });
    Ok(row.is_some())
}

/// The names `who` follows, at most `limit`.
pub async fn followed_names(store: &Store, who: i64, limit: i64) -> sqlx::Result<Vec<String>> {
    let rows: Vec<(String,)> = dispatch!(store.reader(), pool => {
        sqlx::query_as(
            "SELECT u.username FROM minitwit_follower f \
             JOIN minitwit_user u ON u.user_id = f.whom_id \
             WHERE f.who_id = $1 ORDER BY u.username LIMIT $2",
        )
        .bind(who)
        .bind(limit)
        .fetch_all(pool)
        .await?
    });
    Ok(rows.into_iter().map(|r| r.0).collect())
}

const LATEST_UPSERT: &str = "INSERT INTO minitwit_latest (id, value) VALUES (1, $1) \
                             ON CONFLICT (id) DO UPDATE SET value = excluded.value";

/// The simulator's last `latest`, -1 before any.
pub async fn latest(store: &Store) -> sqlx::Result<i64> {
    let row: Option<(i64,)> = dispatch!(store.reader(), pool => {
        sqlx::query_as("SELECT value FROM minitwit_latest WHERE id = 1")
            .fetch_optional(pool)
            .await?
    });
    Ok(row.map_or(-1, |r| r.0))
}

/// Records `latest`. On PostgreSQL without waiting for the disk: it is a progress marker
/// written by every simulator request, and an fsync each would double their cost.
pub async fn set_latest(store: &Store, value: i64) -> sqlx::Result<()> {
    match store.writer() {
        Db::Pg(pool) => {
            // One round trip: a simple-protocol batch. The value is an integer, formatted.
            let batch = format!(
                "BEGIN; SET LOCAL synchronous_commit = off; \
                 INSERT INTO minitwit_latest (id, value) VALUES (1, {value}) \
                 ON CONFLICT (id) DO UPDATE SET value = excluded.value; COMMIT"
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(batch))
                .execute(pool)
                .await?;
        }
        Db::Lite(pool) => {
            sqlx::query(LATEST_UPSERT).bind(value).execute(pool).await?;
        }
    }
    Ok(())
}

/// What is stored of a session token: its SHA-256 in hex. The cookie carries the token, the
/// table only its digest, so a copy of the database opens no session. (A fast hash is
/// enough: the token is 32 random bytes, not a password.)
fn session_digest(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts a browser session for `user_id` (stores the token's digest only).
pub async fn add_session(
    store: &Store,
    token: &str,
    user_id: i64,
    expires_at: i64,
) -> sqlx::Result<()> {
    dispatch!(store.writer(), pool => {
        sqlx::query("INSERT INTO minitwit_session (token, user_id, expires_at) VALUES ($1, $2, $3)")
            .bind(session_digest(token))
            .bind(user_id)
            .bind(expires_at)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The user of a live session.
pub async fn session_user(store: &Store, token: &str, now: i64) -> sqlx::Result<Option<User>> {
    dispatch!(store.reader(), pool => {
        sqlx::query_as(
            "SELECT u.user_id, u.username, u.email FROM minitwit_session s \
             JOIN minitwit_user u ON u.user_id = s.user_id \
             WHERE s.token = $1 AND s.expires_at > $2",
        )
        .bind(session_digest(token))
        .bind(now)
        .fetch_optional(pool)
        .await
    })
}

/// Ends a session, and any that expired.
pub async fn end_session(store: &Store, token: &str, now: i64) -> sqlx::Result<()> {
    dispatch!(store.writer(), pool => {
        sqlx::query("DELETE FROM minitwit_session WHERE token = $1 OR expires_at <= $2")
            .bind(session_digest(token))
            .bind(now)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Users, messages (flagged included) and follow pairs.
pub async fn counts(store: &Store) -> sqlx::Result<(i64, i64, i64)> {
    dispatch!(store.reader(), pool => {
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM minitwit_user), \
                    (SELECT COUNT(*) FROM minitwit_message), \
                    (SELECT COUNT(*) FROM minitwit_follower)",
        )
        .fetch_one(pool)
        .await
    })
}

/// Records `latest` inside the statement it precedes (PostgreSQL; `$N` is the value or NULL).
macro_rules! with_latest {
    ($n:literal) => {
        concat!(
            "WITH latest AS ( \
                 INSERT INTO minitwit_latest (id, value) SELECT 1, $",
            $n,
            "::BIGINT WHERE $",
            $n,
            "::BIGINT IS NOT NULL \
                 ON CONFLICT (id) DO UPDATE SET value = excluded.value) "
        )
    };
}

/// The simulator's `POST /msgs/<u>`: records `latest` (when given) and posts as `username`;
/// `false` when there is no such user. On PostgreSQL it is one statement, so one round trip
/// and one commit: a request's database time is most of its time there.
pub async fn post_message(
    store: &Store,
    latest: Option<i64>,
    username: &str,
    text: &str,
    now: i64,
) -> sqlx::Result<bool> {
    macro_rules! insert {
        () => {
            "INSERT INTO minitwit_message (author_id, text, pub_date, flagged) \
             SELECT user_id, $2, $3, FALSE FROM minitwit_user WHERE username = $1"
        };
    }
    let inserted = match store.writer() {
        Db::Pg(pool) => sqlx::query(concat!(with_latest!("4"), insert!()))
            .bind(username)
            .bind(text)
            .bind(now)
            .bind(latest)
            .execute(pool)
            .await?
            .rows_affected(),
        Db::Lite(pool) => {
            let mut tx = pool.begin().await?;
            if let Some(value) = latest {
                sqlx::query(LATEST_UPSERT)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
            }
            let inserted = sqlx::query(insert!())
                .bind(username)
                .bind(text)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            inserted
        }
    };
    Ok(inserted == 1)
}

/// The simulator's `POST /fllws/<u>`: records `latest` (when given), then makes `who` follow
/// (or unfollow) `whom` if both exist; returns both ids as found. One statement on PostgreSQL.
pub async fn change_follow(
    store: &Store,
    latest: Option<i64>,
    who: &str,
    whom: &str,
    follow: bool,
) -> sqlx::Result<(Option<i64>, Option<i64>)> {
    match store.writer() {
        Db::Pg(pool) => {
            let sql = if follow {
                concat!(
                    with_latest!("3"),
                    ", who AS (SELECT user_id FROM minitwit_user WHERE username = $1), \
                       whom AS (SELECT user_id FROM minitwit_user WHERE username = $2), \
                       changed AS (INSERT INTO minitwit_follower (who_id, whom_id) \
                           SELECT who.user_id, whom.user_id FROM who, whom \
                           ON CONFLICT (who_id, whom_id) DO NOTHING) \
                     SELECT (SELECT user_id FROM who), (SELECT user_id FROM whom)"
                )
            } else {
                concat!(
                    with_latest!("3"),
                    ", who AS (SELECT user_id FROM minitwit_user WHERE username = $1), \
                       whom AS (SELECT user_id FROM minitwit_user WHERE username = $2), \
                       changed AS (DELETE FROM minitwit_follower \
                           WHERE who_id = (SELECT user_id FROM who) \
                             AND whom_id = (SELECT user_id FROM whom)) \
                     SELECT (SELECT user_id FROM who), (SELECT user_id FROM whom)"
                )
            };
            sqlx::query_as(sql)
                .bind(who)
                .bind(whom)
                .bind(latest)
                .fetch_one(pool)
                .await
        }
        Db::Lite(pool) => {
            let mut tx = pool.begin().await?;
            if let Some(value) = latest {
                sqlx::query(LATEST_UPSERT)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
            }
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT username, user_id FROM minitwit_user WHERE username IN ($1, $2)",
            )
            .bind(who)
            .bind(whom)
            .fetch_all(&mut *tx)
            .await?;
            let find = |name: &str| rows.iter().find(|r| r.0 == name).map(|r| r.1);
            let (who_id, whom_id) = (find(who), find(whom));
            if let (Some(a), Some(b)) = (who_id, whom_id) {
                let sql = if follow {
                    "INSERT INTO minitwit_follower (who_id, whom_id) VALUES ($1, $2) \
                     ON CONFLICT (who_id, whom_id) DO NOTHING"
                } else {
                    "DELETE FROM minitwit_follower WHERE who_id = $1 AND whom_id = $2"
                };
                sqlx::query(sql).bind(a).bind(b).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok((who_id, whom_id))
        }
    }
}

/// `seed`'s users, generated in the database (a million rows in one statement).
const SEED_USERS: Sql = Sql {
    postgres: "INSERT INTO minitwit_user (username, email, pw_hash) \
             SELECT 'seed user ' || i, 'seed' || i || '@example.com', $2 \
             FROM generate_series(1, $1) AS i ON CONFLICT (username) DO NOTHING",
    sqlite: "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             INSERT INTO minitwit_user (username, email, pw_hash) \
             SELECT 'seed user ' || i, 'seed' || i || '@example.com', $2 FROM n WHERE true \
             ON CONFLICT (username) DO NOTHING",
};

/// `seed`'s messages, spread over its users.
const SEED_MESSAGES: Sql = Sql {
    postgres: "INSERT INTO minitwit_message (author_id, text, pub_date, flagged) \
             SELECT u.user_id, 'Seed message number ' || i, $3 - $1 + i, FALSE \
             FROM generate_series(1, $1) AS i \
             JOIN minitwit_user u ON u.username = 'seed user ' || (1 + i % $2)",
    sqlite: "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             INSERT INTO minitwit_message (author_id, text, pub_date, flagged) \
             SELECT u.user_id, 'Seed message number ' || i, $3 - $1 + i, FALSE \
             FROM n JOIN minitwit_user u ON u.username = 'seed user ' || (1 + i % $2)",
};

/// Fills the database for benchmarks: `users` users named `seed user N` (password hash
/// `pw_hash`) and `messages` messages spread over them, one second apart, newest now.
/// Returns the messages added.
pub async fn seed(
    store: &Store,
    users: i64,
    messages: i64,
    pw_hash: &str,
    now: i64,
) -> sqlx::Result<u64> {
    // Both dialects generate the rows in the database: a million rows in one statement.
    let (add_users, add_messages) = (store.sql(SEED_USERS), store.sql(SEED_MESSAGES));
    dispatch!(store.writer(), pool => {
        sqlx::query(add_users).bind(users).bind(pw_hash).execute(pool).await?;
        let added = sqlx::query(add_messages)
            .bind(messages)
            .bind(users)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected();
        Ok(added)
    })
}
