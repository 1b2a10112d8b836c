-- Funnel rollups, kept by an aggregator that reads the event feed (its
-- place in the feed and its lease are the sink_cursors row
-- '@funnel-rollups'), so that a funnel reads sums per hour instead of the
-- session log.

-- The groups a funnel splits by: a flow's sessions with the same version,
-- platform, app version and experiment arms.
CREATE TABLE funnel_cohorts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flow_id      TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    flow_version INTEGER NOT NULL,
    platform     TEXT,
    app_version  TEXT,
    -- JSON object: experiment id → variant.
    arms         TEXT    NOT NULL,
    UNIQUE (flow_id, key)
);

-- Each session's walk between batches (analytics::funnel::Walk as JSON).
-- idle_node: where it drops off once idle, NULL when it completed, was
-- closed, stands on an end, or has been quiet longer than the longest idle
-- threshold (then its drop-off is in the rollups: "settled"); only the
-- rows with one are read at query time.
CREATE TABLE funnel_sessions (
    session_id TEXT    NOT NULL PRIMARY KEY,
    flow_id    TEXT    NOT NULL,
    -- 0: not counted (a preview).
    cohort_id  BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL,
    last_at    BIGINT  NOT NULL,
    idle_node  TEXT,
    walk       TEXT    NOT NULL
);

-- Covers the query-time count of idle sessions.
CREATE INDEX funnel_sessions_idle
    ON funnel_sessions (flow_id, last_at, created_at, cohort_id, idle_node)
    WHERE idle_node IS NOT NULL;
-- Finds the sessions to settle.
CREATE INDEX funnel_sessions_unsettled ON funnel_sessions (last_at)
    WHERE idle_node IS NOT NULL;

-- What the sessions that started in one hour, or one (UTC) day, did
-- (analytics::funnel::Funnel as JSON), per cohort. span: the length in ms
-- (3600000 or 86400000), start: its first ms.
CREATE TABLE funnel_rollups (
    flow_id   TEXT    NOT NULL,
    span      BIGINT  NOT NULL,
    start     BIGINT  NOT NULL,
    cohort_id BIGINT  NOT NULL,
    data      TEXT    NOT NULL,
    PRIMARY KEY (flow_id, span, start, cohort_id)
);
