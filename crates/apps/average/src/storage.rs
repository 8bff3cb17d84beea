//! Where the files live: any `object_store` store. A local directory by default; an
//! S3-compatible bucket when the workers run on several machines.

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};

/// The app's file store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Where it points, for the job resource (`file:///...` or `s3://bucket`).
    pub url: String,
}

impl Storage {
    /// A directory on this machine (made if missing).
    ///
    /// # Errors
    /// When the directory cannot be made or resolved.
    pub fn local(dir: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let store = LocalFileSystem::new_with_prefix(&dir)?;
        Ok(Self {
            store: Arc::new(store),
            url: format!("file://{}", dir.display()),
        })
    }

    /// A directory path, or `s3://bucket[/prefix]`: S3 or any S3-compatible server, set up
    /// from the standard environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL` for a server other than Amazon's, `AWS_ALLOW_HTTP`
    /// for one without TLS).
    ///
    /// # Errors
    /// A directory that cannot be made, or S3 settings that do not make a client.
    pub fn open(location: &str) -> anyhow::Result<Self> {
        if location.starts_with("s3://") {
            conveyor_web::install_tls_provider();
            let store = AmazonS3Builder::from_env().with_url(location).build()?;
            let url = location.trim_end_matches('/').to_owned();
            match url
                .strip_prefix("s3://")
                .and_then(|rest| rest.split_once('/'))
            {
                // A prefix inside the bucket: every path goes under it.
                Some((_, prefix)) if !prefix.is_empty() => {
                    let prefixed = PrefixStore::new(store, prefix);
                    Ok(Self::new(Arc::new(prefixed), url))
                }
                _ => Ok(Self::new(Arc::new(store), url)),
            }
        } else {
            Self::local(std::path::Path::new(location))
        }
    }

    /// Any store, named by `url` in job resources.
    pub fn new(store: Arc<dyn ObjectStore>, url: impl Into<String>) -> Self {
        Self {
            store,
            url: url.into(),
        }
    }

    /// Writes a whole file.
    ///
    /// # Errors
    /// The store's.
    pub async fn put(&self, path: &str, bytes: Vec<u8>) -> object_store::Result<()> {
        self.store.put(&Path::from(path), bytes.into()).await?;
        Ok(())
    }

    /// Reads a whole file.
    ///
    /// # Errors
    /// The store's (`NotFound` for a missing file).
    pub async fn get(&self, path: &str) -> object_store::Result<bytes::Bytes> {
        self.store.get(&Path::from(path)).await?.bytes().await
    }

    /// Deletes every file under `prefix`; returns how many.
    ///
    /// # Errors
    /// The store's.
    pub async fn delete_under(&self, prefix: &str) -> object_store::Result<usize> {
        let paths = self
            .store
            .list(Some(&Path::from(prefix)))
            .map_ok(|meta| meta.location)
            .boxed();
        let deleted: Vec<Path> = self.store.delete_stream(paths).try_collect().await?;
        Ok(deleted.len())
    }
}
