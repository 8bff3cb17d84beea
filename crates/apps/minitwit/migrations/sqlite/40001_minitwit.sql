-- MiniTwit: users, who follows whom, messages, the simulator's `latest`, and sessions.
-- Tables carry a prefix: they share the database with the job engine and other apps.

CREATE TABLE minitwit_user (
    user_id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    pw_hash TEXT NOT NULL
);

CREATE TABLE minitwit_follower (
    who_id BIGINT NOT NULL REFERENCES minitwit_user (user_id),
    whom_id BIGINT NOT NULL REFERENCES minitwit_user (user_id),
    PRIMARY KEY (who_id, whom_id)
);

CREATE TABLE minitwit_message (
    message_id INTEGER PRIMARY KEY AUTOINCREMENT,
    author_id BIGINT NOT NULL REFERENCES minitwit_user (user_id),
    text TEXT NOT NULL,
    pub_date BIGINT NOT NULL,
    flagged BOOLEAN NOT NULL DEFAULT FALSE
);

-- The public timeline (newest first) and a user's own messages.
CREATE INDEX minitwit_message_pub_date_idx ON minitwit_message (pub_date, message_id);
CREATE INDEX minitwit_message_author_idx ON minitwit_message (author_id, pub_date, message_id);

-- The simulator's last `latest` value: one row, written by every request that carries it.
CREATE TABLE minitwit_latest (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);

-- Logged-in browsers: a random token in an HttpOnly cookie names the user.
CREATE TABLE minitwit_session (
    token TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES minitwit_user (user_id),
    expires_at BIGINT NOT NULL
);
