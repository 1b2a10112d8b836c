-- Retention deletes idempotency records by age (`--idempotency-hours`).
-- Records are appended roughly in time order, which is what a BRIN index
-- summarizes: a few pages of ranges instead of a B-tree entry per record,
-- so a submit pays next to nothing for it. (SQLite finds the oldest
-- records by rowid and needs no index.)
CREATE INDEX idempotency_created_at ON idempotency USING brin (created_at);
