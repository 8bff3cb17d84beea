//! The git command line: shallow clone within a size and time bound, HEAD, tracked files,
//! recent commits, and file contents read from the object store.
//!
//! Clones are made without a working tree (`--no-checkout`): the analysis reads each file's
//! blob through one `git cat-file --batch` per task ([`Blobs`]). Writing out the tree cost a
//! run of 1,074 files (471 directories) 1.3-1.5 s of file creation here, a fifth of the
//! whole run, for files that are read once; the download area now holds only objects.
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

/// The URL git is given: local paths become absolute paths. git clones those locally, so
/// `--depth` does not apply to them (`file://` URLs are cloned shallow), and [`clone`]
/// borrows their objects (see `borrow`) instead of copying or linking them.
pub fn remote(url: &str) -> String {
    if !is_local_path(url) {
        return url.to_owned();
    }
    let path = Path::new(url);
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    absolute.display().to_string()
}

/// A path on this machine rather than a URL (`scheme://...` or scp-like `git@host:...`).
fn is_local_path(url: &str) -> bool {
    !url.contains("://") && !url.starts_with("git@")
}

fn git() -> Command {
    let mut command = Command::from(git_blocking());
    command.kill_on_drop(true);
    command
}

/// `git` with nothing asked of a terminal and no system configuration.
fn git_blocking() -> std::process::Command {
    let mut command = std::process::Command::new("git");
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null());
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
    if is_local_path(url) {
        let borrowed = tokio::time::timeout(limits.timeout, borrow(&remote(url), into)).await;
        match borrowed {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(GitError::Timeout(limits.timeout)),
        }
    }
    let mut command = git();
    command
        .args([
            "-c",
            "credential.helper=",
            "clone",
            "--quiet",
            "--no-tags",
            "--no-checkout",
            // No template: the sample hooks, the description and info/ (19 entries) serve
            // no clone that is read and removed. Creating a file took 0.6 ms here (strace)
            // on an ext4 download area after its deletions; a local clone creates 63
            // anyway, 16 of them git writing its config again.
            "--template=",
        ])
        .args([
            "--single-branch",
            "--depth",
            &limits.depth.max(1).to_string(),
        ]);
    if is_local_path(url) {
        // A shallow local path (the others are borrowed without git clone, see `borrow`):
        // git ignores `--local` for it and fetches; `--shared` asks it to read objects in
        // place where it can, instead of hard-linking every object file.
        command.arg("--shared");
    } else if url.starts_with("file://") {
        // The pack crosses a pipe on this machine, so making it smaller saves no transfer.
        // Searching it for deltas took 60 of the 155 ms of a clone of tokio's sources (for a
        // pack 3 % smaller), and compressing what is not compressed already (loose objects:
        // a packed source's objects are reused as they are) half of the 100 ms left. The
        // clone then holds its files stored, about a checkout's size, and reading them back
        // inflates nothing. Only for `file://`: over ssh this would run on the server.
        command.arg("--upload-pack=git -c pack.window=0 -c pack.compression=0 upload-pack");
    }
    command
        .arg("--")
        .arg(remote(url))
        .arg(into)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = spawn_group(&mut command).map_err(GitError::Spawn)?;
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
            kill_group(&child);
            let _ = child.kill().await;
            Err(error)
        }
    };
    if result.is_err() {
        let _ = tokio::fs::remove_dir_all(into).await;
    }
    result
}

/// A local repository's clone without `git clone`: a bare repository of five entries whose
/// HEAD is the source's HEAD commit (detached, so the source moving on changes nothing)
/// and whose objects are the source's, read in place (git's alternates, as `--shared`
/// did). `git clone` of a local path spent 30-60 ms here in three processes (`sh` and
/// `git-upload-pack` beside it) writing 24 entries, its config rewritten ten times, for a
/// clone that is only read: a sixth of a 380-file repository's run. `Ok(false)` for a
/// shallow source, which needs the real clone (its `shallow` list does not come along).
/// Like `git clone`, it takes the top of a repository or a bare one, never a directory
/// inside one.
async fn borrow(source: &str, into: &Path) -> Result<bool, GitError> {
    let failed = |stderr: String| GitError::Failed {
        step: "clone",
        stderr,
    };
    let out = output(
        Path::new(source),
        "clone",
        &[
            "rev-parse",
            "--path-format=absolute",
            "--show-prefix",
            "--is-bare-repository",
            "--is-shallow-repository",
            "--absolute-git-dir",
            "--show-object-format",
            "--git-path",
            "objects",
            "HEAD^{commit}",
        ],
    )
    .await?;
    let text = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = text.lines().collect();
    let [prefix, bare, shallow, git_dir, format, objects, commit] = lines[..] else {
        return Err(failed(format!("unexpected rev-parse output: {text:?}")));
    };
    let top = if bare == "true" {
        tokio::fs::canonicalize(git_dir).await.ok() == tokio::fs::canonicalize(source).await.ok()
    } else {
        prefix.is_empty()
    };
    if !top {
        return Err(failed(format!(
            "{source} is inside a repository, not the top of one"
        )));
    }
    if shallow == "true" {
        return Ok(false);
    }
    if !is_object_id(commit) {
        return Err(failed(format!("HEAD is not a commit: {commit:?}")));
    }
    let (into, objects, commit) = (into.to_path_buf(), objects.to_owned(), commit.to_owned());
    // A repository of another hash than git's default says so in its config.
    let config = (format != "sha1").then(|| {
        format!("[core]\n\trepositoryformatversion = 1\n[extensions]\n\tobjectformat = {format}\n")
    });
    let made = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        // As git clone: the leading directories are made, the clone itself must be new.
        if let Some(parent) = into.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::create_dir(&into)?;
        let made = (|| {
            std::fs::create_dir_all(into.join("objects/info"))?;
            std::fs::create_dir(into.join("refs"))?;
            std::fs::write(into.join("objects/info/alternates"), format!("{objects}\n"))?;
            if let Some(config) = config {
                std::fs::write(into.join("config"), config)?;
            }
            std::fs::write(into.join("HEAD"), format!("{commit}\n"))
        })();
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&into);
        }
        made
    })
    .await
    .map_err(|e| failed(e.to_string()))?;
    made.map_err(|e| failed(format!("cannot write the clone: {e}")))?;
    Ok(true)
}

/// Spawns `command` as the leader of a new process group, so that what it starts (ssh,
/// `git-upload-pack` for a local clone, `git-remote-https`) can be stopped with it.
fn spawn_group(command: &mut Command) -> std::io::Result<tokio::process::Child> {
    command.process_group(0).spawn()
}

/// Kills the process group led by `child` (killing only the leader would leave its
/// children running, and a remote helper that still downloads keeps filling the area).
fn kill_group(child: &tokio::process::Child) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
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
    /// Its blob's object id (hex).
    pub blob: String,
}

/// The regular files of HEAD's tree in `dir` (no symbolic links, no submodules), at most
/// `max`, with their sizes and blobs, as git stores them.
///
/// # Errors
/// [`GitError`].
pub async fn files(dir: &Path, max: usize) -> Result<Vec<TrackedFile>, GitError> {
    let out = output(
        dir,
        "ls-tree",
        &["ls-tree", "-r", "-l", "-z", "--full-tree", "HEAD"],
    )
    .await?;
    Ok(parse_tree(&out, max))
}

/// Parses `ls-tree -r -l -z`: `<mode> <type> <object> <size>\t<path>` per entry.
fn parse_tree(out: &[u8], max: usize) -> Vec<TrackedFile> {
    let mut files = Vec::new();
    for entry in out.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let Some(tab) = entry.iter().position(|b| *b == b'\t') else {
            continue;
        };
        let (Ok(head), Ok(path)) = (
            std::str::from_utf8(&entry[..tab]),
            std::str::from_utf8(&entry[tab + 1..]),
        ) else {
            continue;
        };
        let mut fields = head.split_ascii_whitespace();
        let (Some(mode), Some("blob"), Some(blob), Some(Ok(bytes))) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        if mode != "100644" && mode != "100755" {
            continue;
        }
        files.push(TrackedFile {
            path: path.to_owned(),
            bytes,
            blob: blob.to_owned(),
        });
        if files.len() >= max {
            break;
        }
    }
    files
}

/// Whether `id` looks like an object id (SHA-1 or SHA-256 hex): ids come back from job
/// arguments, and one line of `cat-file --batch` input must stay one request.
pub fn is_object_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A blob as [`Blobs::read`] finds it.
#[derive(Debug, PartialEq, Eq)]
pub enum Blob {
    /// Its bytes.
    Bytes(Vec<u8>),
    /// Larger than the limit asked for: its size (the content was skipped, not kept).
    TooLarge(u64),
    /// Not in the clone.
    Missing,
}

/// Object ids asked of `git cat-file` ahead of the one being read: git reads and inflates
/// the next blobs while the caller works on this one. Bounded so the requests always fit
/// in the pipe (64 x 41 bytes), which git may not read while its answers wait for us.
const ASKED_AHEAD: usize = 64;

/// Bytes of git's answers that may wait in the pipe (Linux's default is 64 KiB, its
/// unprivileged most 1 MiB): git answers a refill of requests (half of [`ASKED_AHEAD`])
/// without waiting for the reader, and sleeps until the next refill. With the default pipe
/// and a request a file, git and the analysis threads switched a file or more each way.
const PIPE_BYTES: i32 = 1 << 20;

/// One `git cat-file --batch` over a clone: blobs by object id, in the order queued.
pub struct Blobs {
    child: BlobsStop,
    input: std::process::ChildStdin,
    output: std::io::BufReader<std::process::ChildStdout>,
    /// Queued and not yet asked.
    queued: std::collections::VecDeque<String>,
    /// Asked and not yet read.
    asked: usize,
}

impl Drop for Blobs {
    fn drop(&mut self) {
        // Killed and reaped: it may be blocked writing answers nobody will read.
        self.child.stop();
        let _ = self
            .child
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wait();
    }
}

/// Stops a [`Blobs`]' git from another thread, so a read blocked on it returns an error.
#[derive(Clone)]
pub struct BlobsStop(std::sync::Arc<std::sync::Mutex<std::process::Child>>);

impl BlobsStop {
    /// Kills the reader's git (a no-op once it ended).
    pub fn stop(&self) {
        let _ = self.0.lock().unwrap_or_else(|e| e.into_inner()).kill();
    }
}

impl Blobs {
    /// Starts the reader in `dir`.
    ///
    /// # Errors
    /// [`GitError::Spawn`].
    pub fn open(dir: &Path) -> Result<Self, GitError> {
        let mut child = git_blocking()
            .arg("-C")
            .arg(dir)
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(GitError::Spawn)?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(GitError::Spawn(std::io::Error::other(
                "no pipes to git cat-file",
            )));
        };
        // Where the pipe cannot grow, it works as it is.
        #[cfg(target_os = "linux")]
        let _ = nix::fcntl::fcntl(&output, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
        Ok(Self {
            child: BlobsStop(std::sync::Arc::new(std::sync::Mutex::new(child))),
            input,
            output: std::io::BufReader::with_capacity(64 << 10, output),
            queued: std::collections::VecDeque::new(),
            asked: 0,
        })
    }

    /// What stops this reader from another thread.
    pub fn stopper(&self) -> BlobsStop {
        self.child.clone()
    }

    /// Queues blobs to read, in order, with [`Blobs::next`].
    ///
    /// # Errors
    /// [`GitError::Failed`] when one is not an object id (nothing is queued then).
    pub fn queue<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) -> Result<(), GitError> {
        let ids: Vec<&str> = ids.into_iter().collect();
        if let Some(bad) = ids.iter().find(|id| !is_object_id(id)) {
            return Err(GitError::Failed {
                step: "cat-file",
                stderr: format!("{bad:?} is not an object id"),
            });
        }
        self.queued.extend(ids.into_iter().map(str::to_owned));
        Ok(())
    }

    /// The blob `id`, unless it is larger than `max` bytes; nothing else may be queued.
    ///
    /// # Errors
    /// As [`Blobs::queue`] and [`Blobs::next`].
    pub fn read(&mut self, id: &str, max: u64) -> Result<Blob, GitError> {
        self.queue([id])?;
        self.next(max)
    }

    /// The next blob queued, unless it is larger than `max` bytes. Blocks while git reads
    /// it: called from the analysis threads, which need it next.
    ///
    /// # Errors
    /// [`GitError::Failed`] when nothing is queued or the reader stopped or answered out of
    /// protocol.
    pub fn next(&mut self, max: u64) -> Result<Blob, GitError> {
        use std::io::{BufRead, Read, Write};
        let failed = |stderr: String| GitError::Failed {
            step: "cat-file",
            stderr,
        };
        let io = |e: std::io::Error| failed(e.to_string());
        let mut requests = String::new();
        // Refilled by halves: git is woken once for many files.
        if self.asked <= ASKED_AHEAD / 2 {
            while self.asked < ASKED_AHEAD
                && let Some(id) = self.queued.pop_front()
            {
                requests.push_str(&id);
                requests.push('\n');
                self.asked += 1;
            }
        }
        if !requests.is_empty() {
            self.input.write_all(requests.as_bytes()).map_err(io)?;
            self.input.flush().map_err(io)?;
        }
        if self.asked == 0 {
            return Err(failed("no blob was queued".into()));
        }
        self.asked -= 1;
        // "<id> <type> <size>\n" then the content and "\n", or "<id> missing\n".
        let mut header = String::new();
        self.output.read_line(&mut header).map_err(io)?;
        let mut fields = header.split_ascii_whitespace();
        let (Some(_), kind, size) = (fields.next(), fields.next(), fields.next()) else {
            return Err(failed("git cat-file stopped".into()));
        };
        if kind == Some("missing") {
            return Ok(Blob::Missing);
        }
        let size: u64 = size
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| failed(format!("unexpected answer {header:?}")))?;
        let blob = if size > max {
            let skipped = std::io::copy(&mut (&mut self.output).take(size), &mut std::io::sink())
                .map_err(io)?;
            if skipped != size {
                return Err(failed("git cat-file stopped mid-blob".into()));
            }
            Blob::TooLarge(size)
        } else {
            let mut bytes = vec![0; usize::try_from(size).map_err(|e| failed(e.to_string()))?];
            self.output.read_exact(&mut bytes).map_err(io)?;
            Blob::Bytes(bytes)
        };
        let mut newline = [0u8; 1];
        self.output.read_exact(&mut newline).map_err(io)?;
        Ok(blob)
    }
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

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_killed_clone_takes_its_children_with_it() {
        let dir = std::env::temp_dir().join(format!("conveyor-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("grandchild.pid");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("sleep 60 & echo $! > {}; wait", pid_file.display()));
        let mut child = spawn_group(&mut command).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let grandchild = loop {
            if let Ok(text) = std::fs::read_to_string(&pid_file)
                && let Ok(pid) = text.trim().parse::<u32>()
            {
                break pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the child never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        kill_group(&child);
        let _ = child.wait().await;
        let alive = || {
            std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .is_ok_and(|stat| !stat.contains(") Z "))
        };
        while alive() {
            assert!(
                std::time::Instant::now() < deadline,
                "the grandchild {grandchild} outlived its group's kill"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    use super::*;

    #[test]
    fn the_tree_listing_keeps_regular_files_only() {
        let blob = "0123456789abcdef0123456789abcdef01234567";
        let out = format!(
            "100644 blob {blob}     120\tsrc/a b.rs\0\
             100755 blob {blob}       7\trun.sh\0\
             120000 blob {blob}       5\tlink\0\
             160000 commit {blob}       -\tvendor/sub\0"
        );
        let files = parse_tree(out.as_bytes(), 10);
        assert_eq!(
            files,
            vec![
                TrackedFile {
                    path: "src/a b.rs".into(),
                    bytes: 120,
                    blob: blob.into()
                },
                TrackedFile {
                    path: "run.sh".into(),
                    bytes: 7,
                    blob: blob.into()
                },
            ]
        );
        assert_eq!(parse_tree(out.as_bytes(), 1).len(), 1);
    }

    #[test]
    fn only_hex_ids_of_object_length_are_ids() {
        assert!(is_object_id("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_object_id("0123456789abcdef0123456789abcdef0123456"));
        assert!(!is_object_id("HEAD\n0123456789abcdef0123456789abcdef01"));
    }

    fn run(dir: &Path, args: &[&str]) {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    }

    #[tokio::test]
    async fn a_clone_without_a_working_tree_lists_and_reads_its_blobs() {
        let root = std::env::temp_dir().join(format!("conveyor-git-test-{}", std::process::id()));
        let source = root.join("source");
        std::fs::create_dir_all(source.join("src")).unwrap();
        std::fs::write(source.join("src/lib.rs"), "fn main() {}\n").unwrap();
        std::fs::write(source.join("big.txt"), "x".repeat(1000)).unwrap();
        run(&source, &["init", "-q"]);
        run(&source, &["add", "-A"]);
        run(&source, &["commit", "-q", "-m", "one"]);

        let into = root.join("clone");
        let limits = CloneLimits {
            timeout: Duration::from_secs(60),
            max_bytes: 10 << 20,
            depth: 1,
        };
        clone(source.to_str().unwrap(), &into, &limits)
            .await
            .unwrap();
        assert!(
            !into.join("src/lib.rs").exists(),
            "no working tree is written"
        );

        let mut files = files(&into, 100).await.unwrap();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let paths: Vec<_> = files.iter().map(|f| (f.path.as_str(), f.bytes)).collect();
        assert_eq!(paths, [("big.txt", 1000), ("src/lib.rs", 13)]);

        let mut blobs = Blobs::open(&into).unwrap();
        assert_eq!(
            blobs.read(&files[1].blob, 100).unwrap(),
            Blob::Bytes(b"fn main() {}\n".to_vec())
        );
        // Skipped content leaves the reader in step for the next request.
        assert_eq!(
            blobs.read(&files[0].blob, 100).unwrap(),
            Blob::TooLarge(1000)
        );
        assert_eq!(blobs.read(&"0".repeat(40), 100).unwrap(), Blob::Missing);
        assert_eq!(
            blobs.read(&files[1].blob, 100).unwrap(),
            Blob::Bytes(b"fn main() {}\n".to_vec())
        );
        assert!(blobs.read("HEAD", 100).is_err());
        // Queued ahead (more than are asked of git at once), answered in order.
        let missing = "0".repeat(40);
        let ids: Vec<&str> = (0..150)
            .map(|i| match i % 3 {
                0 => files[1].blob.as_str(),
                1 => files[0].blob.as_str(),
                _ => missing.as_str(),
            })
            .collect();
        blobs.queue(ids).unwrap();
        for i in 0..150 {
            let expected = match i % 3 {
                0 => Blob::Bytes(b"fn main() {}\n".to_vec()),
                1 => Blob::TooLarge(1000),
                _ => Blob::Missing,
            };
            assert_eq!(blobs.next(100).unwrap(), expected, "blob {i}");
        }
        assert!(blobs.next(100).is_err(), "nothing more was queued");
        assert!(blobs.queue(["not-an-id"]).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// The one file a clone lists, read back.
    async fn only_file(dir: &Path) -> Blob {
        let listed = files(dir, 10).await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        Blobs::open(dir)
            .unwrap()
            .read(&listed[0].blob, 100)
            .unwrap()
    }

    #[tokio::test]
    async fn a_local_repository_is_read_in_place_at_the_commit_it_had() {
        let root = std::env::temp_dir().join(format!("conveyor-git-borrow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let source = root.join("source");
        std::fs::create_dir_all(source.join("src")).unwrap();
        std::fs::write(source.join("src/lib.rs"), "fn one() {}\n").unwrap();
        run(&source, &["init", "-q"]);
        run(&source, &["add", "-A"]);
        run(&source, &["commit", "-q", "-m", "one"]);
        let limits = CloneLimits {
            timeout: Duration::from_secs(60),
            max_bytes: 10 << 20,
            depth: 1,
        };
        // Into an area not made yet (a worker's first clone), as git clone would.
        let into = root.join("area/not/made/clone");
        clone(source.to_str().unwrap(), &into, &limits)
            .await
            .unwrap();
        let first = head(&into).await.unwrap();
        assert!(
            into.join("objects/info/alternates").exists(),
            "objects are borrowed"
        );
        assert!(
            !into.join("objects/pack").exists(),
            "no object was copied: {into:?}"
        );
        // The source moves on; the clone stays at the commit it was made at.
        std::fs::write(source.join("src/lib.rs"), "fn two() {}\n").unwrap();
        run(&source, &["commit", "-q", "-a", "-m", "two"]);
        assert_eq!(head(&into).await.unwrap(), first);
        assert_eq!(
            only_file(&into).await,
            Blob::Bytes(b"fn one() {}\n".to_vec())
        );
        assert_eq!(commits(&into, 10).await.unwrap().len(), 1);

        // A bare repository serves too.
        run(&root, &["clone", "-q", "--bare", "source", "bare.git"]);
        let from_bare = root.join("from-bare");
        clone(root.join("bare.git").to_str().unwrap(), &from_bare, &limits)
            .await
            .unwrap();
        assert_ne!(
            head(&from_bare).await.unwrap(),
            first,
            "the bare one has two commits"
        );
        assert_eq!(commits(&from_bare, 10).await.unwrap().len(), 2);

        // A directory inside a repository, or no repository at all, is refused as git
        // clone refuses it, and leaves nothing behind.
        for (path, says) in [
            (source.join("src"), "inside a repository"),
            (root.join("nothing"), "clone"),
        ] {
            std::fs::create_dir_all(&path).unwrap();
            let into = root.join("refused");
            let error = clone(path.to_str().unwrap(), &into, &limits)
                .await
                .unwrap_err();
            assert!(error.to_string().contains(says), "{path:?}: {error}");
            assert!(!into.exists());
        }

        // A repository of SHA-256 ids: the clone says so in its config.
        let sha256 = root.join("sha256");
        std::fs::create_dir_all(&sha256).unwrap();
        std::fs::write(sha256.join("a.rs"), "fn a() {}\n").unwrap();
        run(&sha256, &["init", "-q", "--object-format=sha256"]);
        run(&sha256, &["add", "-A"]);
        run(&sha256, &["commit", "-q", "-m", "one"]);
        let from_sha256 = root.join("from-sha256");
        clone(sha256.to_str().unwrap(), &from_sha256, &limits)
            .await
            .unwrap();
        assert_eq!(head(&from_sha256).await.unwrap().len(), 64);
        assert_eq!(
            only_file(&from_sha256).await,
            Blob::Bytes(b"fn a() {}\n".to_vec())
        );

        // A shallow source needs git's own clone, which copies its `shallow` list.
        let shallow = root.join("shallow");
        let url = format!("file://{}", source.display());
        run(&root, &["clone", "-q", "--depth", "1", &url, "shallow"]);
        let from_shallow = root.join("from-shallow");
        clone(shallow.to_str().unwrap(), &from_shallow, &limits)
            .await
            .unwrap();
        assert!(!from_shallow.join("objects/info/alternates").exists());
        assert_eq!(commits(&from_shallow, 10).await.unwrap().len(), 1);
        assert_eq!(files(&from_shallow, 10).await.unwrap().len(), 1);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
