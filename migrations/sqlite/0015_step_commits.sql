-- `commit_step` and `create_session` in one statement each, as
-- `session_commits` is for `commit`: sqlx runs SQLite on a worker thread of
-- its own, and the transactions of separate statements these replace took
-- five to eight round trips to that thread, holding the single write
-- connection across each. A statement is atomic, so a RAISE or a
-- constraint failure anywhere undoes all of it. The `baton:*` messages are
-- matched by the store code.

-- A session's new tasks, as the two views below take them: inserting a row
-- here inserts each task of `tasks`.
CREATE VIEW step_task_inserts AS
SELECT NULL AS session_id,
       NULL AS at,
       NULL AS tasks            -- JSON array of [id, node, kind, state, due_at,
                                --   attempts, lease_owner, queue, event_name,
                                --   correlation, mock, input as a JSON string]
WHERE 0;

CREATE TRIGGER step_task_inserts_apply INSTEAD OF INSERT ON step_task_inserts
BEGIN
    INSERT INTO step_tasks (id, session_id, node, kind, state, due_at, attempts,
                            lease_owner, queue, event_name, correlation, mock, input,
                            created_at, updated_at)
    SELECT json_extract(t.value, '$[0]'), NEW.session_id, json_extract(t.value, '$[1]'),
           json_extract(t.value, '$[2]'), json_extract(t.value, '$[3]'),
           json_extract(t.value, '$[4]'), json_extract(t.value, '$[5]'),
           json_extract(t.value, '$[6]'), json_extract(t.value, '$[7]'),
           json_extract(t.value, '$[8]'), json_extract(t.value, '$[9]'),
           json_extract(t.value, '$[10]'), json_extract(t.value, '$[11]'),
           NEW.at, NEW.at
      FROM json_each(NEW.tasks) AS t
     ORDER BY t.key;
END;

-- A commit (through `session_commits`, which checks the seq and the key)
-- that also finishes a task and records new tasks and attempts.
CREATE VIEW session_step_commits AS
SELECT NULL AS session_id,
       NULL AS expected_seq,
       NULL AS status,
       NULL AS state,
       NULL AS at,
       NULL AS events,          -- as in session_commits
       NULL AS idem_key,        -- NULL: no idempotency record
       NULL AS idem_request_hash,
       NULL AS idem_response,
       NULL AS finish_task,     -- NULL: no task to finish
       NULL AS finish_outcome,
       NULL AS tasks,           -- as in step_task_inserts
       NULL AS attempts         -- JSON array of [task_id, attempt, session_id,
                                --   node, worker, started_at, finished_at,
                                --   outcome, status_code, error]
WHERE 0;

CREATE TRIGGER session_step_commits_apply INSTEAD OF INSERT ON session_step_commits
BEGIN
    SELECT RAISE(ABORT, 'baton:task_finished')
     WHERE NEW.finish_task IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM step_tasks
                        WHERE id = NEW.finish_task AND state <> 'done');
    UPDATE step_tasks
       SET state = 'done', outcome = NEW.finish_outcome, due_at = NULL,
           lease_owner = NULL, updated_at = NEW.at
     WHERE id = NEW.finish_task AND state <> 'done';
    INSERT INTO session_commits (session_id, expected_seq, status, state, at, events,
                                 idem_key, idem_request_hash, idem_response)
    VALUES (NEW.session_id, NEW.expected_seq, NEW.status, NEW.state, NEW.at, NEW.events,
            NEW.idem_key, NEW.idem_request_hash, NEW.idem_response);
    INSERT INTO step_task_inserts (session_id, at, tasks)
    VALUES (NEW.session_id, NEW.at, NEW.tasks);
    INSERT INTO step_attempts (task_id, attempt, session_id, node, worker, started_at,
                               finished_at, outcome, status_code, error)
    SELECT json_extract(a.value, '$[0]'), json_extract(a.value, '$[1]'),
           json_extract(a.value, '$[2]'), json_extract(a.value, '$[3]'),
           json_extract(a.value, '$[4]'), json_extract(a.value, '$[5]'),
           json_extract(a.value, '$[6]'), json_extract(a.value, '$[7]'),
           json_extract(a.value, '$[8]'), json_extract(a.value, '$[9]')
      FROM json_each(NEW.attempts) AS a;
END;

-- A new session with its events and tasks.
CREATE VIEW session_starts AS
SELECT NULL AS id,
       NULL AS flow_id,
       NULL AS flow_version,
       NULL AS user_id,
       NULL AS token_hash,
       NULL AS status,
       NULL AS state,
       NULL AS at,
       NULL AS events,          -- as in session_commits
       NULL AS tasks            -- as in step_task_inserts
WHERE 0;

CREATE TRIGGER session_starts_apply INSTEAD OF INSERT ON session_starts
BEGIN
    INSERT INTO sessions (id, flow_id, flow_version, user_id, token_hash, status, seq,
                          state, created_at, updated_at)
    VALUES (NEW.id, NEW.flow_id, NEW.flow_version, NEW.user_id, NEW.token_hash, NEW.status,
            json_array_length(NEW.events), NEW.state, NEW.at, NEW.at);
    INSERT INTO session_events (session_id, seq, kind, payload, created_at)
    SELECT NEW.id, 1 + e.key, json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]'),
           NEW.at
      FROM json_each(NEW.events) AS e;
    INSERT INTO step_task_inserts (session_id, at, tasks) VALUES (NEW.id, NEW.at, NEW.tasks);
END;
