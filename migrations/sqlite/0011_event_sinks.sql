-- Where each configured sink (a webhook) is in the event feed, and which
-- replica delivers to it: one at a time, by lease, so a sink gets its
-- events in order. `cursor` NULL: not placed in the feed yet; '': before
-- the first event.
CREATE TABLE sink_cursors (
    sink        TEXT    NOT NULL PRIMARY KEY,
    cursor      TEXT,
    owner       TEXT,
    lease_until INTEGER  NOT NULL DEFAULT 0,
    delivered   INTEGER  NOT NULL DEFAULT 0,
    updated_at  INTEGER  NOT NULL
) STRICT;

-- Batches a sink refused until its retries ran out; an admin replays them.
CREATE TABLE dead_letters (
    id           TEXT    NOT NULL PRIMARY KEY,
    sink         TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    events       INTEGER NOT NULL,
    first_cursor TEXT    NOT NULL,
    last_cursor  TEXT    NOT NULL,
    attempts     INTEGER NOT NULL,
    error        TEXT    NOT NULL,
    created_at   INTEGER  NOT NULL,
    replayed_at  INTEGER
) STRICT;

CREATE INDEX dead_letters_by_sink ON dead_letters (sink, created_at);
