-- Baton store, PostgreSQL flavour. Keep in step with ../sqlite/0001_init.sql.
-- JSON columns are TEXT, not JSONB: the bytes serde_json wrote come back unchanged
-- (key order, number spelling), exactly as on SQLite, and nothing is parsed twice on
-- the hot path. Ad-hoc queries can still cast: `state::jsonb -> 'node'`.
-- Timestamps are epoch milliseconds, as on SQLite.

CREATE TABLE flow_versions (
    flow_id      TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version > 0),
    content_hash TEXT    NOT NULL,
    definition   TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    CONSTRAINT flow_versions_pkey PRIMARY KEY (flow_id, version)
);

CREATE FUNCTION baton_reject_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are immutable', TG_TABLE_NAME;
END;
$$;

-- A published version is what running sessions are pinned to: never rewrite it.
CREATE TRIGGER flow_versions_immutable BEFORE UPDATE ON flow_versions
    FOR EACH ROW EXECUTE FUNCTION baton_reject_update();

-- fillfactor leaves room on each page so the per-commit UPDATE stays a HOT update
-- (no indexed column changes).
CREATE TABLE sessions (
    id           TEXT    NOT NULL,
    flow_id      TEXT    NOT NULL,
    flow_version INTEGER NOT NULL,
    user_id      TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    seq          BIGINT  NOT NULL CHECK (seq >= 0),
    state        TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    CONSTRAINT sessions_pkey PRIMARY KEY (id),
    CONSTRAINT sessions_flow_version_fkey FOREIGN KEY (flow_id, flow_version)
        REFERENCES flow_versions (flow_id, version)
) WITH (fillfactor = 80);

CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE session_events (
    session_id TEXT   NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL CHECK (seq > 0),
    kind       TEXT   NOT NULL,
    payload    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT session_events_pkey PRIMARY KEY (session_id, seq)
);

-- The log is append-only; deletes stay possible for retention (cascading from sessions).
CREATE TRIGGER session_events_append_only BEFORE UPDATE ON session_events
    FOR EACH ROW EXECUTE FUNCTION baton_reject_update();

CREATE TABLE idempotency (
    session_id   TEXT   NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    key          TEXT   NOT NULL,
    request_hash TEXT   NOT NULL,
    response     TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    CONSTRAINT idempotency_pkey PRIMARY KEY (session_id, key)
);
