-- repostats: the repositories seen, their languages, what the current "newest 100" is, and
-- the GitHub rate-limit budget shared by every worker on every machine.

-- One row per repository ever listed. `item` is GitHub's search item as received (JSON);
-- `languages` is its languages body once fetched, with the ETag that makes refetching free.
CREATE TABLE repostats_repo (
    id BIGINT PRIMARY KEY,
    full_name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    item TEXT NOT NULL,
    languages TEXT,
    languages_etag TEXT,
    listed_at BIGINT NOT NULL,
    languages_at BIGINT
);

-- One row: the ids of the newest repositories at the last refresh, and the version that
-- every change bumps, which API replicas poll to reload their snapshot.
CREATE TABLE repostats_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    current_ids TEXT NOT NULL,
    refreshed_at BIGINT,
    search_etag TEXT
);
INSERT INTO repostats_state (id, version, current_ids) VALUES (1, 0, '[]');

-- The budget of each token (or "anonymous") per GitHub rate bucket (core, search), from the
-- last response's x-ratelimit-* headers; `blocked_until` after a 403/429 or retry-after.
CREATE TABLE repostats_rate (
    token TEXT NOT NULL,
    bucket TEXT NOT NULL,
    -- The window's size as GitHub last stated it (x-ratelimit-limit).
    budget BIGINT NOT NULL,
    remaining BIGINT NOT NULL,
    reset_at BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL DEFAULT 0,
    strikes INTEGER NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (token, bucket)
);
