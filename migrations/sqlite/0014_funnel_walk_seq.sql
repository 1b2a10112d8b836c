-- The seq of the last event of the session folded into its walk. The
-- aggregator writes what it folded in several transactions, the feed
-- position with the last one; an aggregator that takes over after a
-- crash between them folds those events again from the written position
-- and skips, per session, the ones its walk already holds. 0: none
-- (event seqs start at 1).
ALTER TABLE funnel_sessions ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
