-- Baton store, SQLite flavour. Keep in step with ../postgres/0001_init.sql.
-- JSON columns are TEXT (serde_json output, key order preserved); timestamps are
-- epoch milliseconds. STRICT makes SQLite enforce the declared column types.

CREATE TABLE flow_versions (
    flow_id      TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version > 0),
    content_hash TEXT    NOT NULL,
    definition   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (flow_id, version)
) STRICT;

-- A published version is what running sessions are pinned to: never rewrite it.
CREATE TRIGGER flow_versions_immutable BEFORE UPDATE ON flow_versions
BEGIN
    SELECT RAISE(ABORT, 'flow_versions rows are immutable');
END;

CREATE TABLE sessions (
    id           TEXT    NOT NULL PRIMARY KEY,
    flow_id      TEXT    NOT NULL,
    flow_version INTEGER NOT NULL,
    user_id      TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    seq          INTEGER NOT NULL CHECK (seq >= 0),
    state        TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    FOREIGN KEY (flow_id, flow_version) REFERENCES flow_versions (flow_id, version)
) STRICT;

CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE session_events (
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL CHECK (seq > 0),
    kind       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq)
) STRICT;

-- The log is append-only; deletes stay possible for retention (cascading from sessions).
CREATE TRIGGER session_events_append_only BEFORE UPDATE ON session_events
BEGIN
    SELECT RAISE(ABORT, 'session_events is append-only');
END;

CREATE TABLE idempotency (
    session_id   TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    response     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (session_id, key)
) STRICT;
