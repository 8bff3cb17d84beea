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
    /// The same store when it is a local directory, read and written with plain file
    /// calls by a task's one blocking call (see [`Storage::read_each_blocking`]):
    /// `object_store` hands every file to a blocking thread twice (open, then read), and
    /// those hand-offs cost more than the reads.
    local: Option<Arc<LocalFileSystem>>,
    /// Where it points, for the job resource (`file:///...` or `s3://bucket`).
    pub url: String,
}

impl Storage {
    /// A directory on this machine (made if missing).
    ///
    /// # Errors
    /// When the directory cannot be made or resolved.
    pub fn local(dir: &std::path::Path) -> conveyor_web::fail::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let store = Arc::new(LocalFileSystem::new_with_prefix(&dir)?);
        Ok(Self {
            store: store.clone(),
            local: Some(store),
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
    pub fn open(location: &str) -> conveyor_web::fail::Result<Self> {
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

    /// Files in memory (what an app not yet configured holds).
    pub fn in_memory() -> Self {
        Self::new(Arc::new(object_store::memory::InMemory::new()), "memory://")
    }

    /// Any store, named by `url` in job resources.
    pub fn new(store: Arc<dyn ObjectStore>, url: impl Into<String>) -> Self {
        Self {
            store,
            local: None,
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

    /// Whether the file at `path` exists: `Ok` if it does.
    ///
    /// # Errors
    /// The store's (`NotFound` for a missing file).
    pub async fn head(&self, path: &str) -> object_store::Result<()> {
        self.store.head(&Path::from(path)).await.map(drop)
    }

    /// The whole file at `path`.
    ///
    /// # Errors
    /// The store's; `NotFound` when there is no such file.
    pub async fn get(&self, path: &str) -> object_store::Result<bytes::Bytes> {
        self.store.get(&Path::from(path)).await?.bytes().await
    }

    /// Reads whole files in the order given and hands each one's bytes to `each`, stopping
    /// at the first error of either; for a blocking thread (it blocks). A local directory
    /// is read with plain file calls into one buffer kept by the thread, so a task's files
    /// cost no allocation and no page faults; other stores are read through the runtime,
    /// all the files at once.
    ///
    /// # Errors
    /// The store's (`NotFound` naming the first missing file); `each`'s inside `Ok`.
    pub fn read_each_blocking<E>(
        &self,
        paths: &[String],
        mut each: impl FnMut(&str, &[u8]) -> Result<(), E>,
    ) -> object_store::Result<Result<(), E>> {
        let Some(local) = &self.local else {
            let reads = paths.iter().map(|path| self.get(path));
            let runtime = tokio::runtime::Handle::current();
            let files = runtime.block_on(futures_util::future::try_join_all(reads))?;
            return Ok(paths
                .iter()
                .zip(&files)
                .try_for_each(|(path, bytes)| each(path, bytes)));
        };
        thread_local! {
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUFFER.with_borrow_mut(|buffer| {
            for path in paths {
                let location = Path::from(path.as_str());
                let file = local.path_to_filesystem(&location)?;
                buffer.clear();
                let read = std::fs::File::open(&file)
                    .and_then(|mut opened| std::io::Read::read_to_end(&mut opened, buffer));
                match read {
                    Ok(_) => {}
                    Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
                        return Err(object_store::Error::NotFound {
                            path: location.to_string(),
                            source: source.into(),
                        });
                    }
                    Err(source) => return Err(local_error(&file, "reading", source)),
                }
                if let Err(error) = each(path, buffer) {
                    return Ok(Err(error));
                }
            }
            Ok(Ok(()))
        })
    }

    /// Writes a whole file; for a blocking thread (it blocks). In a local directory, as
    /// `object_store` does it: into a staging file beside it, then renamed over it, so a
    /// reader never sees half a file. The staging file's name (`NAME#N.part`) is one the
    /// store lists, so deleting a job's files removes one a crash left behind.
    ///
    /// # Errors
    /// The store's.
    pub fn write_blocking(&self, path: &str, bytes: &[u8]) -> object_store::Result<()> {
        let Some(local) = &self.local else {
            return tokio::runtime::Handle::current().block_on(self.put(path, bytes.to_vec()));
        };
        let file = local.path_to_filesystem(&Path::from(path))?;
        let (mut attempt, mut made_dir) = (1u32, false);
        let staging = loop {
            let mut staging = file.clone().into_os_string();
            staging.push(format!("#{attempt}.part"));
            let staging = std::path::PathBuf::from(staging);
            match std::fs::File::create_new(&staging) {
                Ok(mut out) => {
                    if let Err(source) = std::io::Write::write_all(&mut out, bytes) {
                        let _ = std::fs::remove_file(&staging);
                        return Err(local_error(&staging, "writing", source));
                    }
                    break staging;
                }
                // Another run of the same task writes the same file right now, or a crash
                // left this staging file: the next name.
                Err(source)
                    if source.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 =>
                {
                    attempt += 1;
                }
                // The first file of its directory: make the directory, then the same name.
                Err(source) if source.kind() == std::io::ErrorKind::NotFound && !made_dir => {
                    if let Some(dir) = file.parent() {
                        std::fs::create_dir_all(dir)
                            .map_err(|source| local_error(dir, "making", source))?;
                    }
                    made_dir = true;
                }
                Err(source) => return Err(local_error(&staging, "creating", source)),
            }
        };
        std::fs::rename(&staging, &file).map_err(|source| {
            let _ = std::fs::remove_file(&staging);
            local_error(&file, "renaming onto", source)
        })
    }

    /// Deletes every file under `prefix`; returns how many. A file that is gone by the
    /// time its turn comes (a staging file renamed meanwhile, another deleter) is not an
    /// error: gone is what was asked. In a local directory the directories left empty go
    /// too (`object_store` deletes files only, which left six empty directories a job).
    ///
    /// # Errors
    /// The store's.
    pub async fn delete_under(&self, prefix: &str) -> object_store::Result<usize> {
        let paths = self
            .store
            .list(Some(&Path::from(prefix)))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = 0;
        let mut results = self.store.delete_stream(paths);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        if let Some(local) = &self.local {
            let dir = local.path_to_filesystem(&Path::from(prefix))?;
            // Best effort: a directory a late task wrote into again stays, for the clean-up
            // task (`average.clean`) to empty later.
            let _ = tokio::task::spawn_blocking(move || remove_empty_dirs(&dir)).await;
        }
        Ok(deleted)
    }
}

/// Removes `dir` and the directories under it that hold no files, deepest first.
fn remove_empty_dirs(dir: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A failed file call on a local directory, naming the file and what was being done.
fn local_error(file: &std::path::Path, doing: &str, source: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("{doing} {}: {source}", file.display()).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "conveyor-storage-{name}-{}-{:x}",
            std::process::id(),
            conveyor_queue::clock::now_ms()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn local_files_round_trip_and_a_missing_one_is_named() {
        let dir = scratch("round-trip");
        let storage = Storage::local(&dir).unwrap();
        storage.write_blocking("a/b/one", b"1 2 3\n").unwrap();
        storage.write_blocking("a/b/one", b"4 5 6\n").unwrap();
        storage.put("a/two", b"7\n".to_vec()).await.unwrap();
        let mut files = Vec::new();
        let read =
            storage.read_each_blocking(&["a/b/one".into(), "a/two".into()], |path, bytes| {
                files.push((path.to_owned(), bytes.to_vec()));
                Ok::<_, ()>(())
            });
        assert!(matches!(read, Ok(Ok(()))));
        assert_eq!(
            files,
            [
                ("a/b/one".to_owned(), b"4 5 6\n".to_vec()),
                ("a/two".to_owned(), b"7\n".to_vec())
            ],
            "the second write replaced the first"
        );
        let stopped = storage.read_each_blocking(&["a/b/one".into(), "a/two".into()], |path, _| {
            Err(format!("stopped at {path}"))
        });
        assert_eq!(stopped.unwrap(), Err("stopped at a/b/one".to_owned()));
        assert_eq!(&storage.get("a/b/one").await.unwrap()[..], b"4 5 6\n");
        match storage.read_each_blocking(&["a/two".into(), "a/none".into()], |_, _| Ok::<_, ()>(()))
        {
            Err(object_store::Error::NotFound { path, .. }) => assert_eq!(path, "a/none"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_staging_file_left_by_a_crash_is_stepped_over_and_deleted_with_the_rest() {
        let dir = scratch("staging");
        let storage = Storage::local(&dir).unwrap();
        std::fs::create_dir_all(dir.join("job")).unwrap();
        std::fs::write(dir.join("job/sum#1.part"), b"half a fi").unwrap();
        storage.write_blocking("job/sum", &[1, 2, 3]).unwrap();
        assert_eq!(std::fs::read(dir.join("job/sum")).unwrap(), [1, 2, 3]);
        assert!(!dir.join("job/sum#2.part").exists(), "renamed into place");
        storage.write_blocking("job/level-0/one", &[4]).unwrap();
        assert_eq!(storage.delete_under("job").await.unwrap(), 3);
        assert!(!dir.join("job").exists(), "no empty directory is left");
        assert!(dir.exists(), "the store's own directory stays");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
