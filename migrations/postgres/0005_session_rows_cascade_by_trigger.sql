-- The session log and the idempotency records lose their foreign keys to
-- `sessions`; a trigger deletes them with their session instead. (0004 is
-- SQLite's alone: its idempotency table move.)
--
-- Why: PostgreSQL checks a foreign key with a query of its own for every
-- inserted row (`SELECT … FOR KEY SHARE` on the session), and a `submit`
-- inserts three or four such rows. Without them `cargo bench --bench load`
-- measured `submit` a fifth faster (about 9,500–10,400 → 11,300–12,600/s
-- on a 2-core VM). The check guards nothing our writes could get wrong:
-- every statement that appends events or an idempotency record does so in
-- the transaction that inserts or updates (and so locks) that very session
-- row, and a commit whose session is gone updates nothing and inserts
-- nothing.
--
-- What stays: deleting a session deletes its rows, as ON DELETE CASCADE did.
-- SQLite keeps its foreign keys; there a check is one B-tree lookup.

ALTER TABLE session_events DROP CONSTRAINT session_events_session_id_fkey;
ALTER TABLE idempotency DROP CONSTRAINT idempotency_session_id_fkey;

CREATE FUNCTION baton_delete_session_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM session_events WHERE session_id = OLD.id;
    DELETE FROM idempotency WHERE session_id = OLD.id;
    RETURN OLD;
END
$$;

CREATE TRIGGER sessions_delete_rows AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION baton_delete_session_rows();
