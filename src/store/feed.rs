//! The event feed: every session event of every session in one order that
//! a consumer can resume from with a cursor, and that never skips an
//! event committed late (migration `0010_event_feed` explains how each
//! backend keeps that promise). Sinks and `baton events tail` read it.

use serde_json::Value;

use super::{Inner, Store, StoreError, parse_json};

/// Most events one read returns.
pub const MAX_FEED_PAGE: i64 = 1000;

/// One event in the feed, with the session it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    /// Where a reader resumes after this event.
    pub cursor: String,
    pub session_id: String,
    pub seq: i64,
    pub kind: String,
    pub payload: Value,
    pub created_at: i64,
    pub flow_id: String,
    pub flow_version: i32,
    pub user_id: String,
}

/// A position in the feed; each backend has its own kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cursor {
    /// `event_feed.id`.
    Sqlite(i64),
    /// The inserting transaction, then the event's key.
    Postgres {
        tx: u64,
        session_id: String,
        seq: i64,
    },
}

impl Cursor {
    fn encode(&self) -> String {
        match self {
            Cursor::Sqlite(id) => format!("s{id}"),
            Cursor::Postgres {
                tx,
                session_id,
                seq,
            } => format!("p{tx}.{seq}.{session_id}"),
        }
    }

    fn decode(s: &str) -> Option<Cursor> {
        if let Some(id) = s.strip_prefix('s') {
            return id.parse().ok().filter(|n| *n >= 0).map(Cursor::Sqlite);
        }
        let rest = s.strip_prefix('p')?;
        let mut parts = rest.splitn(3, '.');
        let tx = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let session_id = parts.next()?.to_owned();
        Some(Cursor::Postgres {
            tx,
            session_id,
            seq,
        })
    }
}

fn invalid(cursor: &str, why: &str) -> StoreError {
    StoreError::InvalidCursor {
        cursor: cursor.chars().take(80).collect(),
        reason: why.to_owned(),
    }
}

type Row = (
    String,
    String,
    i64,
    String,
    String,
    i64,
    String,
    i32,
    String,
);

impl Store {
    /// Up to `limit` events after `after` (from the first event without
    /// one), oldest first. A cursor from another store, or not one at all,
    /// is [`StoreError::InvalidCursor`].
    pub async fn event_feed(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<FeedEvent>, StoreError> {
        let limit = limit.clamp(1, MAX_FEED_PAGE);
        let after = match after {
            None => None,
            Some(raw) => Some((
                raw,
                Cursor::decode(raw).ok_or_else(|| invalid(raw, "not a feed cursor"))?,
            )),
        };
        let rows: Vec<Row> = match &self.inner {
            Inner::Sqlite { read, .. } => {
                let id = match after {
                    None => 0,
                    Some((_, Cursor::Sqlite(id))) => id,
                    Some((raw, Cursor::Postgres { .. })) => {
                        return Err(invalid(raw, "a PostgreSQL store's cursor, this is SQLite"));
                    }
                };
                sqlx::query_as(
                    "SELECT CAST(f.id AS TEXT), e.session_id, e.seq, e.kind, e.payload, e.created_at, \
                     s.flow_id, s.flow_version, s.user_id \
                     FROM event_feed f \
                     JOIN session_events e ON e.session_id = f.session_id AND e.seq = f.seq \
                     JOIN sessions s ON s.id = e.session_id \
                     WHERE f.id > ?1 ORDER BY f.id LIMIT ?2",
                )
                .bind(id)
                .bind(limit)
                .fetch_all(read)
                .await?
            }
            Inner::Postgres(pool) => {
                let (tx, session_id, seq) = match after {
                    None => (0, String::new(), 0),
                    Some((
                        _,
                        Cursor::Postgres {
                            tx,
                            session_id,
                            seq,
                        },
                    )) => (tx, session_id, seq),
                    Some((raw, Cursor::Sqlite(_))) => {
                        return Err(invalid(raw, "a SQLite store's cursor, this is PostgreSQL"));
                    }
                };
                // Only transactions older than every running one: their
                // events are final, and no later commit can sort before them.
                sqlx::query_as(
                    "SELECT e.tx::text, e.session_id, e.seq, e.kind, e.payload, e.created_at, \
                     s.flow_id, s.flow_version, s.user_id \
                     FROM session_events e JOIN sessions s ON s.id = e.session_id \
                     WHERE (e.tx, e.session_id, e.seq) > ($1::text::xid8, $2, $3) \
                     AND e.tx < pg_snapshot_xmin(pg_current_snapshot()) \
                     ORDER BY e.tx, e.session_id, e.seq LIMIT $4",
                )
                .bind(tx.to_string())
                .bind(session_id)
                .bind(seq)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        let postgres = matches!(self.inner, Inner::Postgres(_));
        rows.into_iter()
            .map(
                |(
                    pos,
                    session_id,
                    seq,
                    kind,
                    payload,
                    created_at,
                    flow_id,
                    flow_version,
                    user_id,
                )| {
                    let cursor = if postgres {
                        Cursor::Postgres {
                            tx: pos.parse().map_err(|_| StoreError::Corrupt {
                                table: "session_events",
                                detail: format!("transaction id `{pos}` is not a number"),
                            })?,
                            session_id: session_id.clone(),
                            seq,
                        }
                    } else {
                        Cursor::Sqlite(pos.parse().map_err(|_| StoreError::Corrupt {
                            table: "event_feed",
                            detail: format!("id `{pos}` is not a number"),
                        })?)
                    };
                    Ok(FeedEvent {
                        cursor: cursor.encode(),
                        payload: parse_json("session_events", "payload", &payload)?,
                        session_id,
                        seq,
                        kind,
                        created_at,
                        flow_id,
                        flow_version,
                        user_id,
                    })
                },
            )
            .collect()
    }

    /// The cursor after the newest event readable now: where a reader
    /// that wants only what happens from now on starts. `None` while the
    /// feed is empty (start from the beginning then).
    pub async fn event_feed_end(&self) -> Result<Option<String>, StoreError> {
        match &self.inner {
            Inner::Sqlite { read, .. } => {
                let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM event_feed")
                    .fetch_one(read)
                    .await?;
                Ok(id.map(|id| Cursor::Sqlite(id).encode()))
            }
            Inner::Postgres(pool) => {
                let row: Option<(String, String, i64)> = sqlx::query_as(
                    "SELECT tx::text, session_id, seq FROM session_events \
                     WHERE tx < pg_snapshot_xmin(pg_current_snapshot()) \
                     ORDER BY tx DESC, session_id DESC, seq DESC LIMIT 1",
                )
                .fetch_optional(pool)
                .await?;
                row.map(|(tx, session_id, seq)| {
                    Ok(Cursor::Postgres {
                        tx: tx.parse().map_err(|_| StoreError::Corrupt {
                            table: "session_events",
                            detail: format!("transaction id `{tx}` is not a number"),
                        })?,
                        session_id,
                        seq,
                    }
                    .encode())
                })
                .transpose()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        for c in [
            Cursor::Sqlite(0),
            Cursor::Sqlite(42),
            Cursor::Postgres {
                tx: 7,
                session_id: "01a2-b.c".into(),
                seq: 3,
            },
        ] {
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
        for junk in ["", "x1", "s", "s-1", "p1", "p1.2", "pa.1.s", "s1.5"] {
            assert_eq!(Cursor::decode(junk), None, "{junk}");
        }
    }
}
