-- The event feed: every session event in one order a consumer can resume
-- from. SQLite has one writer, so ids given at insert follow commit order;
-- AUTOINCREMENT never hands an id out twice. The trigger keeps the feed in
-- the event's own transaction.
CREATE TABLE event_feed (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL
) STRICT;

INSERT INTO event_feed (session_id, seq)
    SELECT session_id, seq FROM session_events ORDER BY created_at, session_id, seq;

CREATE TRIGGER session_events_feed AFTER INSERT ON session_events
BEGIN
    INSERT INTO event_feed (session_id, seq) VALUES (NEW.session_id, NEW.seq);
END;
