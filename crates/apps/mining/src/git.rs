//! The git command line: shallow clone within a size and time bound, HEAD, tracked files,
//! recent commits.
//!
//! We run `git` rather than link libgit2 or gix: it is on every machine that has
//! repositories, speaks every transport (https, ssh, `file://`) with shallow clones
//! everywhere (libgit2's local transport cannot), costs no compile time, and a child
//! process can be killed when it overruns its bounds, which a library call cannot.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Why a git step failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// git could not be started.
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    /// git ran and failed.
    #[error("git {step} failed: {stderr}")]
    Failed {
        /// clone, rev-parse, ls-files, log.
        step: &'static str,
        /// The end of what it printed.
        stderr: String,
    },
    /// The clone ran past its time.
    #[error("clone took longer than {0:?}")]
    Timeout(Duration),
    /// The clone grew past its size.
    #[error("clone grew beyond {0} bytes")]
    TooLarge(u64),
}

/// Bounds of one clone.
#[derive(Debug, Clone)]
pub struct CloneLimits {
    /// Longest a clone may take (the POC's 300 s).
    pub timeout: Duration,
    /// Largest a clone may grow on disk, in bytes.
    pub max_bytes: u64,
    /// Commits of history fetched (`--depth`).
    pub depth: u32,
}

/// The URL git is given: local paths become absolute paths. git clones those by
/// hard-linking the object files (a third of the time of a `file://` clone here, which packs
/// every object), so `--depth` does not apply to them; `file://` URLs are cloned shallow.
pub fn remote(url: &str) -> String {
    if url.contains("://") || url.starts_with("git@") {
        return url.to_owned();
    }
    let path = Path::new(url);
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    absolute.display().to_string()
}

fn git() -> Command {
    let mut command = Command::new("git");
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(400)
        .map_or(0, |(index, _)| index);
    text[start..].to_owned()
}

/// Clones `url` into `into` (which must not exist), shallow, killed when it overruns
/// `limits`; a failed clone leaves nothing behind.
///
/// # Errors
/// [`GitError`].
pub async fn clone(url: &str, into: &Path, limits: &CloneLimits) -> Result<(), GitError> {
    let mut child = git()
        .args(["-c", "credential.helper=", "clone", "--quiet", "--no-tags"])
        .args([
            "--single-branch",
            "--depth",
            &limits.depth.max(1).to_string(),
        ])
        .arg("--")
        .arg(remote(url))
        .arg(into)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(GitError::Spawn)?;
    let mut stderr = child.stderr.take();
    let reader = tokio::spawn(async move {
        let mut buffer = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = tokio::io::AsyncReadExt::read_to_end(stderr, &mut buffer).await;
        }
        buffer
    });
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let outcome = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(GitError::Spawn),
            () = tokio::time::sleep_until(deadline) => break Err(GitError::Timeout(limits.timeout)),
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if size_of(into).await > limits.max_bytes {
                    break Err(GitError::TooLarge(limits.max_bytes));
                }
            }
        }
    };
    let result = match outcome {
        Ok(status) if status.success() => {
            if size_of(into).await > limits.max_bytes {
                Err(GitError::TooLarge(limits.max_bytes))
            } else {
                Ok(())
            }
        }
        Ok(_) => Err(GitError::Failed {
            step: "clone",
            stderr: tail(&reader.await.unwrap_or_default()),
        }),
        Err(error) => {
            let _ = child.kill().await;
            Err(error)
        }
    };
    if result.is_err() {
        let _ = tokio::fs::remove_dir_all(into).await;
    }
    result
}

async fn output(dir: &Path, step: &'static str, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let out = git()
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .await
        .map_err(GitError::Spawn)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(GitError::Failed {
            step,
            stderr: tail(&out.stderr),
        })
    }
}

/// The commit checked out in `dir`.
///
/// # Errors
/// [`GitError`].
pub async fn head(dir: &Path) -> Result<String, GitError> {
    let out = output(dir, "rev-parse", &["rev-parse", "HEAD"]).await?;
    Ok(String::from_utf8_lossy(&out).trim().to_owned())
}

/// A tracked regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedFile {
    /// Path inside the repository, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// The tracked regular files of `dir` (no symbolic links, no submodules), at most `max`.
///
/// # Errors
/// [`GitError`].
pub async fn files(dir: &Path, max: usize) -> Result<Vec<TrackedFile>, GitError> {
    let out = output(dir, "ls-files", &["ls-files", "-z", "--stage"]).await?;
    let dir = dir.to_path_buf();
    // Sizes in one blocking task (one hand-off, not one per file).
    let files = tokio::task::spawn_blocking(move || {
        let mut files = Vec::new();
        for entry in out.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            // "<mode> <object> <stage>\t<path>"
            let Some(tab) = entry.iter().position(|b| *b == b'\t') else {
                continue;
            };
            let mode = &entry[..entry.iter().position(|b| *b == b' ').unwrap_or(0)];
            if mode != b"100644" && mode != b"100755" {
                continue;
            }
            let Ok(path) = std::str::from_utf8(&entry[tab + 1..]) else {
                continue;
            };
            let Ok(meta) = std::fs::metadata(dir.join(path)) else {
                continue;
            };
            files.push(TrackedFile {
                path: path.to_owned(),
                bytes: meta.len(),
            });
            if files.len() >= max {
                break;
            }
        }
        files
    })
    .await
    .unwrap_or_default();
    Ok(files)
}

/// One commit of the fetched history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Its hash.
    pub sha: String,
    /// Parents known (the shallow boundary shows none).
    pub parents: usize,
    /// Committer time, seconds since the epoch.
    pub time: i64,
    /// The whole message.
    pub message: String,
}

/// The newest `max` commits reachable from HEAD.
///
/// # Errors
/// [`GitError`].
pub async fn commits(dir: &Path, max: usize) -> Result<Vec<Commit>, GitError> {
    let limit = format!("--max-count={max}");
    let out = output(
        dir,
        "log",
        &["log", &limit, "--format=%H%x1f%P%x1f%ct%x1f%B%x1e"],
    )
    .await?;
    let text = String::from_utf8_lossy(&out);
    Ok(text
        .split('\u{1e}')
        .filter_map(|record| {
            let mut fields = record.trim_start_matches('\n').splitn(4, '\u{1f}');
            let sha = fields.next()?.trim();
            if sha.is_empty() {
                return None;
            }
            Some(Commit {
                sha: sha.to_owned(),
                parents: fields.next()?.split_whitespace().count(),
                time: fields.next()?.trim().parse().unwrap_or(0),
                message: fields.next().unwrap_or("").trim().to_owned(),
            })
        })
        .collect())
}

/// Bytes under `dir` (0 when it does not exist).
pub async fn size_of(dir: &Path) -> u64 {
    let dir: PathBuf = dir.to_path_buf();
    tokio::task::spawn_blocking(move || walk_size(&dir))
        .await
        .unwrap_or(0)
}

fn walk_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => walk_size(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
