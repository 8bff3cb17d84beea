//! mining's API keys for third parties (the POC's 500 requests a minute each): random,
//! shown once, stored as SHA-256 hashes in `mining_api_key`; checked and throttled by the
//! platform's [`conveyor_web::keys::KeyGate`].

use conveyor_queue::Store;
use conveyor_web::ApiError;
use conveyor_web::keys::{Key, Keys};
use futures_util::future::BoxFuture;

use crate::db;

pub use conveyor_web::keys::{KeyGate, gate, hash};

/// A new random key: `cm_` and 48 hex digits.
pub fn generate() -> String {
    conveyor_web::keys::generate("cm_")
}

/// Creates a key; returns its row id and the key, which is not stored.
///
/// # Errors
/// The database's.
pub async fn create(
    store: &Store,
    name: &str,
    per_minute: i32,
    admin: bool,
) -> sqlx::Result<(i64, String)> {
    let key = generate();
    let id = db::insert_key(
        store,
        name,
        &hash(&key),
        per_minute,
        admin,
        conveyor_queue::clock::now_ms(),
    )
    .await?;
    Ok((id, key))
}

/// The gate over mining's keys in `store`.
pub fn gate_over(store: Store, require: bool, auth: conveyor_web::auth::Auth) -> KeyGate {
    KeyGate::new(std::sync::Arc::new(MiningKeys(store)), require, auth)
}

/// mining's keys, in its table.
pub struct MiningKeys(pub Store);

impl Keys for MiningKeys {
    fn find<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<Key>, ApiError>> {
        Box::pin(async move {
            Ok(db::key_by_hash(&self.0, hash).await?.map(|row| Key {
                id: row.id,
                name: row.name,
                per_minute: row.per_minute,
                admin: row.admin,
            }))
        })
    }
}
