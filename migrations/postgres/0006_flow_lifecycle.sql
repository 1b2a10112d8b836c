-- The release process of flows (keep in step with ../sqlite/0006_flow_lifecycle.sql).
-- A version keeps who made it, why, and the text it was saved as; its content
-- stays immutable. Whether it serves new sessions lives in `flow_releases`,
-- and every change is a row of the append-only `audit_log`.

ALTER TABLE flow_versions ADD COLUMN author TEXT NOT NULL DEFAULT 'files';
ALTER TABLE flow_versions ADD COLUMN message TEXT NOT NULL DEFAULT '';
-- The YAML or JSON text as saved; NULL for versions recorded before 0006.
ALTER TABLE flow_versions ADD COLUMN source TEXT;

-- A version ever published (its status is RETIRED once no release serves it).
CREATE TABLE flow_publications (
    flow_id      TEXT   NOT NULL,
    version      INTEGER NOT NULL,
    published_by TEXT   NOT NULL,
    published_at BIGINT NOT NULL,
    CONSTRAINT flow_publications_pkey PRIMARY KEY (flow_id, version),
    CONSTRAINT flow_publications_version_fkey FOREIGN KEY (flow_id, version)
        REFERENCES flow_versions (flow_id, version)
);

-- What new sessions of a flow start on: `live_version`, except the users
-- whose bucket falls under `rollout_percent`, who get `rollout_version`.
-- `revision` grows with every change so replicas see it.
CREATE TABLE flow_releases (
    flow_id         TEXT    NOT NULL,
    live_version    INTEGER NOT NULL,
    rollout_version INTEGER,
    rollout_percent INTEGER NOT NULL DEFAULT 0 CHECK (rollout_percent BETWEEN 0 AND 100),
    revision        BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    CONSTRAINT flow_releases_pkey PRIMARY KEY (flow_id),
    CONSTRAINT flow_releases_live_fkey FOREIGN KEY (flow_id, live_version)
        REFERENCES flow_versions (flow_id, version),
    CONSTRAINT flow_releases_rollout_fkey FOREIGN KEY (flow_id, rollout_version)
        REFERENCES flow_versions (flow_id, version)
);

-- A publish waiting for a second publisher (`--require-review`).
CREATE TABLE publish_requests (
    flow_id         TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    requested_by    TEXT    NOT NULL,
    rollout_percent INTEGER NOT NULL,
    message         TEXT    NOT NULL,
    override_reason TEXT,
    created_at      BIGINT  NOT NULL,
    CONSTRAINT publish_requests_pkey PRIMARY KEY (flow_id, version),
    CONSTRAINT publish_requests_version_fkey FOREIGN KEY (flow_id, version)
        REFERENCES flow_versions (flow_id, version)
);

-- Versions recorded before 0006 were served as soon as they were loaded.
INSERT INTO flow_publications (flow_id, version, published_by, published_at)
    SELECT flow_id, version, 'files', created_at FROM flow_versions;
INSERT INTO flow_releases (flow_id, live_version, rollout_version, rollout_percent, revision, updated_at)
    SELECT flow_id, MAX(version), NULL, 0, 1, MAX(created_at) FROM flow_versions GROUP BY flow_id;

CREATE TABLE audit_log (
    id      BIGSERIAL NOT NULL,
    at      BIGINT    NOT NULL,
    actor   TEXT      NOT NULL,
    action  TEXT      NOT NULL,
    subject TEXT      NOT NULL,
    version INTEGER,
    message TEXT,
    detail  TEXT      NOT NULL,
    CONSTRAINT audit_log_pkey PRIMARY KEY (id)
);

CREATE INDEX audit_log_subject ON audit_log (subject, id);

CREATE FUNCTION baton_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION baton_reject_change();
