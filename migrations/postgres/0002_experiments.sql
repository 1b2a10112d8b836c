-- Experiments, PostgreSQL flavour. Keep in step with ../sqlite/0002_experiments.sql.
--
-- Exposures, conversions and QA forcing of a session are events in the session
-- log (kinds `experiment_*`, payload JSON with `experiment`), written in the same
-- commit as the advance that caused them: the log is the source of results. The
-- partial index below finds one experiment's events without scanning the log; the
-- `kind IN (…)` predicate keeps every other event out of it, so ordinary commits
-- pay only the predicate.

-- Sticky assignment: the first variant a user got in an experiment, forever.
CREATE TABLE experiment_assignments (
    experiment_id TEXT   NOT NULL,
    user_id       TEXT   NOT NULL,
    variant       TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    CONSTRAINT experiment_assignments_pkey PRIMARY KEY (experiment_id, user_id)
);

-- An assignment never moves: a weight change must not re-bucket an exposed user.
CREATE TRIGGER experiment_assignments_immutable BEFORE UPDATE ON experiment_assignments
    FOR EACH ROW EXECUTE FUNCTION baton_reject_update();

-- QA: a variant forced for every session of a user (until cleared). Sessions it
-- applies to record their exposures as forced, and results leave them out.
CREATE TABLE experiment_forced_users (
    experiment_id TEXT   NOT NULL,
    user_id       TEXT   NOT NULL,
    variant       TEXT   NOT NULL,
    forced_by     TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    CONSTRAINT experiment_forced_users_pkey PRIMARY KEY (experiment_id, user_id)
);

CREATE INDEX session_events_experiment
    ON session_events (((payload::jsonb) ->> 'experiment'))
 WHERE kind IN ('experiment_exposed', 'experiment_converted', 'experiment_forced',
                'experiment_unforced');
