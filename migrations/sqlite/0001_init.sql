-- Baton store, SQLite flavour. Keep in step with ../postgres/0001_init.sql.
-- JSON columns are TEXT (serde_json output, key order preserved); timestamps are
-- epoch milliseconds. STRICT makes SQLite enforce the declared column types.
-- The log and the idempotency records are WITHOUT ROWID: the primary key is the
-- table, so an append writes one B-tree page instead of two (table + key index)
-- and a session's events sit together in seq order.

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
) STRICT, WITHOUT ROWID;

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
) STRICT, WITHOUT ROWID;

-- `commit` in one statement, hence one round trip and no explicit transaction:
-- inserting a row into this view runs the trigger below, and a statement is
-- atomic, so a RAISE or a constraint failure anywhere undoes all of it.
-- The `baton:*` messages are matched by the store code.
CREATE VIEW session_commits AS
SELECT NULL AS session_id,
       NULL AS expected_seq,
       NULL AS status,
       NULL AS state,
       NULL AS at,
       NULL AS events,          -- JSON array of [kind, payload as a JSON string]
       NULL AS idem_key,        -- NULL: no idempotency record
       NULL AS idem_request_hash,
       NULL AS idem_response
WHERE 0;

CREATE TRIGGER session_commits_apply INSTEAD OF INSERT ON session_commits
BEGIN
    SELECT RAISE(ABORT, 'baton:stale_seq')
     WHERE (SELECT seq FROM sessions WHERE id = NEW.session_id) IS NOT NEW.expected_seq;
    SELECT RAISE(ABORT, 'baton:idempotency_key_taken')
     WHERE NEW.idem_key IS NOT NULL
       AND EXISTS (SELECT 1 FROM idempotency
                    WHERE session_id = NEW.session_id AND key = NEW.idem_key);
    UPDATE sessions
       SET status = NEW.status,
           state = NEW.state,
           seq = NEW.expected_seq + json_array_length(NEW.events),
           updated_at = NEW.at
     WHERE id = NEW.session_id;
    INSERT INTO session_events (session_id, seq, kind, payload, created_at)
    SELECT NEW.session_id, NEW.expected_seq + 1 + e.key,
           json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]'), NEW.at
      FROM json_each(NEW.events) AS e;
    INSERT INTO idempotency (session_id, key, request_hash, response, created_at)
    SELECT NEW.session_id, NEW.idem_key, NEW.idem_request_hash, NEW.idem_response, NEW.at
     WHERE NEW.idem_key IS NOT NULL;
END;
