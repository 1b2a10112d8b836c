-- Whether the task's last claim took it from a worker whose lease had run
-- out, so the claimer can count lease expiries (RETURNING sees new values
-- only; the claim's SET still sees the old state).
ALTER TABLE step_tasks ADD COLUMN reclaimed INTEGER NOT NULL DEFAULT 0;
