-- The event feed: every session event in one order a consumer can resume
-- from. Ids from a sequence would commit out of order (a reader past id 9
-- could miss an id 8 committed later), so the order is the inserting
-- transaction's id, and a reader only takes events of transactions older
-- than every one still running (pg_snapshot_xmin): those are final.
ALTER TABLE session_events ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX session_events_feed ON session_events (tx, session_id, seq);
