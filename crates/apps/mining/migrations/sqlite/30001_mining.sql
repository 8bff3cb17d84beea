-- mining: the Frege pipeline's rows. Indexers discover repositories (`mining_repo`, state
-- `discovered`); the feeder admits a bounded number to `queued` with a processing job each;
-- processing clones, lists and records files (`mining_file`, state `pending`) and commits
-- (`mining_commit`), then an engine group analyses the files; its continuation removes the
-- clone and marks the repository `analyzed`. Times are ms since the epoch, as the engine's.

CREATE TABLE mining_indexer (
    name TEXT PRIMARY KEY,
    -- Which implementation: github, gitlab, bitbucket, list.
    host TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    -- JSON, the implementation's settings and its resumable position.
    settings TEXT NOT NULL,
    cursor TEXT NOT NULL,
    -- Throttled or finished until then.
    paused_until BIGINT,
    discovered BIGINT NOT NULL DEFAULT 0,
    last_run_at BIGINT,
    last_error TEXT,
    updated_at BIGINT NOT NULL
);

CREATE TABLE mining_repo (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    name TEXT NOT NULL,
    indexer TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('discovered', 'queued', 'fetching', 'analyzing', 'analyzed', 'failed')),
    -- The processing job of the current run: a rerun of the same job sees its own work.
    job_id BIGINT,
    group_id BIGINT,
    head_commit TEXT,
    -- Bytes of the clone, files in the tree, files with an analyzer.
    clone_bytes BIGINT,
    files_listed INTEGER,
    files_total INTEGER,
    error TEXT,
    discovered_at BIGINT NOT NULL,
    fetched_at BIGINT,
    analyzed_at BIGINT,
    updated_at BIGINT NOT NULL
);

CREATE UNIQUE INDEX mining_repo_url_idx ON mining_repo (url);
-- The feeder's "oldest discovered first", and counts by state.
CREATE INDEX mining_repo_state_idx ON mining_repo (state, id);
-- The live stream reads what changed since its last look.
CREATE INDEX mining_repo_updated_idx ON mining_repo (updated_at);

CREATE TABLE mining_file (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo_id BIGINT NOT NULL REFERENCES mining_repo (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    language TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'analyzed', 'failed')),
    error TEXT,
    -- tokei's line counts.
    code BIGINT,
    comments BIGINT,
    blanks BIGINT,
    -- rust-code-analysis, where it parses the language.
    sloc REAL,
    ploc REAL,
    lloc REAL,
    cloc REAL,
    functions REAL,
    cyclomatic REAL,
    cognitive REAL,
    mi REAL,
    -- Every analyzer's whole output, JSON, by analyzer name.
    metrics TEXT,
    analyzed_at BIGINT,
    updated_at BIGINT NOT NULL
);

CREATE UNIQUE INDEX mining_file_repo_path_idx ON mining_file (repo_id, path);
CREATE INDEX mining_file_language_idx ON mining_file (language, id);
CREATE INDEX mining_file_updated_idx ON mining_file (updated_at);

CREATE TABLE mining_commit (
    repo_id BIGINT NOT NULL REFERENCES mining_repo (id) ON DELETE CASCADE,
    sha TEXT NOT NULL,
    committed_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    readability REAL,
    summary TEXT NOT NULL,
    PRIMARY KEY (repo_id, sha)
);

CREATE TABLE mining_api_key (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    -- SHA-256 of the key, hex: the key itself is shown once, at creation.
    key_hash TEXT NOT NULL,
    per_minute INTEGER NOT NULL,
    admin BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE UNIQUE INDEX mining_api_key_hash_idx ON mining_api_key (key_hash);

-- One row: the feeder locks it so two feeders cannot both admit up to the cap.
CREATE TABLE mining_feeder (
    id INTEGER PRIMARY KEY,
    fed_at BIGINT NOT NULL
);

INSERT INTO mining_feeder (id, fed_at) VALUES (1, 0);
