-- Backend steps: durable tasks, their attempts, and the inbox of external
-- events. Keep in step with ../postgres/0003_steps.sql.
--
-- A task is claimable when `state <> 'done'` and `due_at <= now`: `due_at` is
-- when a ready task may start, when a running task's lease expires (so a
-- task whose worker died is taken again), or an open task's deadline
-- (approval `due`, event `timeout`; NULL = none).

CREATE TABLE step_tasks (
    id          TEXT    NOT NULL PRIMARY KEY,
    session_id  TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    node        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,           -- http | wait | approval | event
    state       TEXT    NOT NULL,           -- ready | running | open | done
    due_at      INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    queue       TEXT,                       -- approval: the reviewer queue
    event_name  TEXT,
    correlation TEXT,
    claimed_by  TEXT,                       -- approval: the reviewer who claimed it
    mock        TEXT,                       -- mock scenario; NULL = real upstreams
    input       TEXT    NOT NULL,           -- JSON: what reviewers see, etc.
    outcome     TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX step_tasks_due ON step_tasks (due_at) WHERE state <> 'done';
CREATE INDEX step_tasks_session ON step_tasks (session_id);
CREATE INDEX step_tasks_event ON step_tasks (event_name, correlation) WHERE state = 'open';
CREATE INDEX step_tasks_queue ON step_tasks (queue, created_at, id)
    WHERE kind = 'approval' AND state = 'open';

CREATE TABLE step_attempts (
    task_id     TEXT    NOT NULL REFERENCES step_tasks (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    session_id  TEXT    NOT NULL,
    node        TEXT    NOT NULL,
    worker      TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,           -- ok | error | timeout | retry
    status_code INTEGER,
    error       TEXT,
    PRIMARY KEY (task_id, attempt)
) STRICT, WITHOUT ROWID;

CREATE INDEX step_attempts_session ON step_attempts (session_id, started_at);

-- Events that arrived for a correlation key no step waits on yet: a step
-- entered later takes the oldest unconsumed one, so an early webhook is not lost.
CREATE TABLE step_inbox (
    id          TEXT    NOT NULL PRIMARY KEY,
    event_name  TEXT    NOT NULL,
    correlation TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    consumed_by TEXT
) STRICT;

CREATE INDEX step_inbox_pending ON step_inbox (event_name, correlation, received_at)
    WHERE consumed_by IS NULL;
