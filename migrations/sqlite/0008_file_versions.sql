-- Every content of the flag and experiment files a server loaded, so the
-- audit log can name the version of each change (flows have flow_versions).
CREATE TABLE file_versions (
    kind         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version > 0),
    content_hash TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (kind, name, version)
) STRICT;
