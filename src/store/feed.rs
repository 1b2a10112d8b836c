//! The event feed: every session event of every session in one order that
//! a consumer can resume from with a cursor, and that never skips an
//! event committed late (migration `0010_event_feed` explains how each
//! backend keeps that promise). Sinks and `baton events tail` read it.

use serde_json::Value;

use super::handoff::{HandedEvents, Part, Receiver, Slice};
use super::{Inner, Store, StoreError, parse_json};

/// Most events one read returns.
pub const MAX_FEED_PAGE: i64 = 1000;

/// One event as the funnel aggregator reads it: the payload fields a
/// funnel folds, nothing it would parse only to drop.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelEvent {
    pub session_id: String,
    /// Its place among the session's events.
    pub seq: i64,
    pub kind: String,
    pub created_at: i64,
    pub node: Option<String>,
    pub node_kind: Option<String>,
    pub action: Option<String>,
    pub to: Option<String>,
}

/// A page of the funnel feed as read, and where the next one starts. Its
/// events stay text until [`FunnelPage::parse`]: the aggregator parses
/// them away from the threads that serve requests.
#[derive(Debug, Default)]
pub struct FunnelPage {
    raw: RawPage,
    /// How many events the page holds.
    pub events: usize,
    /// The cursor after the last event; `None` when the page is empty.
    pub end: Option<String>,
    /// Of its events, how many the writer handed over (see
    /// [`super::handoff`]) rather than read from the store.
    pub handed: usize,
}

/// A page's events as each backend reads them cheapest.
#[derive(Debug)]
enum RawPage {
    /// `(session, seq, kind, created_at, payload)` in feed order.
    Rows(Vec<(String, i64, String, i64, String)>),
    /// The same as one JSON array: SQLite hands rows over one at a time
    /// through its worker thread, and one row for the page costs less
    /// than a few thousand.
    Json(String),
    /// Parts of commits the writer handed over (see [`super::handoff`])
    /// in feed order, and those not handed over as read: a JSON array of
    /// `[feed id, session, seq, kind, created_at, payload]` in feed order.
    Handed(Vec<Part>, String),
}

impl Default for RawPage {
    fn default() -> RawPage {
        RawPage::Rows(Vec::new())
    }
}

impl FunnelPage {
    /// The page's events: each session's together and in order.
    pub fn parse(self) -> Result<Vec<FunnelEvent>, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            table: "session_events",
            detail: format!("payload: {e}"),
        };
        let mut events: Vec<FunnelEvent> = match self.raw {
            RawPage::Rows(rows) => rows
                .into_iter()
                .map(|(session_id, seq, kind, created_at, payload)| {
                    let p: Payload = serde_json::from_str(&payload).map_err(corrupt)?;
                    Ok(p.event(session_id, seq, kind, created_at))
                })
                .collect::<Result<_, StoreError>>()?,
            RawPage::Json(text) => {
                let rows: Vec<(String, i64, String, i64, Payload)> =
                    serde_json::from_str(&text).map_err(corrupt)?;
                rows.into_iter()
                    .map(|(session_id, seq, kind, created_at, p)| {
                        p.event(session_id, seq, kind, created_at)
                    })
                    .collect()
            }
            RawPage::Handed(parts, read) => {
                let read: Vec<(i64, String, i64, String, i64, Payload)> =
                    serde_json::from_str(&read).map_err(corrupt)?;
                let mut read = read.into_iter().peekable();
                let mut events = Vec::with_capacity(self.events);
                for part in parts {
                    match part {
                        Part::Handed(slice) => handed(slice, &mut events)?,
                        // Not read: its session was deleted since.
                        Part::Missed(id) => {
                            if let Some((_, session_id, seq, kind, created_at, p)) =
                                read.next_if(|r| r.0 == id)
                            {
                                events.push(p.event(session_id, seq, kind, created_at));
                            }
                        }
                    }
                }
                events
            }
        };
        // Stable: a session's events keep their feed order.
        events.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        Ok(events)
    }
}

/// Appends the events of a handed commit that `slice` holds.
fn handed(slice: Slice, events: &mut Vec<FunnelEvent>) -> Result<(), StoreError> {
    let Slice { commit, start, len } = slice;
    let corrupt = |detail: String| StoreError::Corrupt {
        table: "session_events",
        detail: format!(
            "a commit of session {} as handed over: {detail}",
            commit.session_id
        ),
    };
    let parsed: Vec<(String, String)>;
    let all = match &commit.events {
        HandedEvents::Json(text) => {
            parsed = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
            &parsed
        }
        HandedEvents::Pairs(pairs) => pairs,
    };
    let part = all
        .get(start..start.saturating_add(len))
        .ok_or_else(|| corrupt(format!("{} events, not {}", all.len(), start + len)))?;
    for ((kind, payload), seq) in part.iter().zip(commit.first_seq + start as i64..) {
        let p: Payload = serde_json::from_str(payload).map_err(|e| corrupt(e.to_string()))?;
        events.push(p.event(commit.session_id.clone(), seq, kind.clone(), commit.at));
    }
    Ok(())
}

/// The payload fields a funnel reads; the rest is skipped unread.
#[derive(serde::Deserialize)]
struct Payload {
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    node_kind: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

impl Payload {
    fn event(self, session_id: String, seq: i64, kind: String, created_at: i64) -> FunnelEvent {
        FunnelEvent {
            session_id,
            seq,
            kind,
            created_at,
            node: self.node,
            node_kind: self.node_kind,
            action: self.action,
            to: self.to,
        }
    }
}

/// Where a read starts: the pool of this store's backend, with the SQLite
/// id or the PostgreSQL `(tx, session, seq)` after which to read.
enum After<'a> {
    Sqlite(&'a sqlx::SqlitePool, i64),
    Postgres(&'a sqlx::PgPool, String, String, i64),
}

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

/// A position in the feed; each backend has its own kind. Positions of
/// one backend order as the feed does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
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

/// [`Store::funnel_feed`] on SQLite with the handoff: which events come
/// next from the feed, what they say from the handoff, and the rest from
/// `session_events`.
async fn sqlite_handed_page(
    read: &sqlx::SqlitePool,
    after: i64,
    limit: i64,
    handoff: &mut Receiver,
) -> Result<FunnelPage, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt {
        table: "event_feed",
        detail: e.to_string(),
    };
    let rows: String = sqlx::query_scalar(
        "WITH page AS (SELECT id, session_id, seq FROM event_feed \
         WHERE id > ?1 ORDER BY id LIMIT ?2) \
         SELECT '[' || COALESCE(group_concat('[' || id || ',' || json_quote(session_id) \
         || ',' || seq || ']', ',' ORDER BY id), '') || ']' FROM page",
    )
    .bind(after)
    .bind(limit)
    .fetch_one(read)
    .await?;
    let rows: Vec<(i64, String, i64)> = serde_json::from_str(&rows).map_err(corrupt)?;
    let parts = handoff.take(&rows);
    let missed: Vec<i64> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Missed(id) => Some(*id),
            Part::Handed(_) => None,
        })
        .collect();
    let read_rows = if missed.is_empty() {
        "[]".to_owned()
    } else {
        sqlx::query_scalar(
            "SELECT '[' || COALESCE(group_concat('[' || f.id || ',' || json_quote(e.session_id) \
             || ',' || e.seq || ',' || json_quote(e.kind) || ',' || e.created_at || ',' \
             || e.payload || ']', ',' \
             ORDER BY f.id), '') || ']' \
             FROM event_feed f \
             JOIN session_events e ON e.session_id = f.session_id AND e.seq = f.seq \
             WHERE f.id IN (SELECT value FROM json_each(?1))",
        )
        .bind(serde_json::to_string(&missed).map_err(corrupt)?)
        .fetch_one(read)
        .await?
    };
    Ok(FunnelPage {
        raw: RawPage::Handed(parts, read_rows),
        events: rows.len(),
        end: rows.last().map(|(id, ..)| Cursor::Sqlite(*id).encode()),
        handed: rows.len() - missed.len(),
    })
}

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
        let rows: Vec<Row> = match self.after(after)? {
            After::Sqlite(read, id) => sqlx::query_as(
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
            .await?,
            After::Postgres(pool, tx, session_id, seq) => {
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
                .bind(tx)
                .bind(session_id)
                .bind(seq)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
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
                    Ok(FeedEvent {
                        cursor: self.cursor_at(&pos, &session_id, seq)?.encode(),
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

    /// Decodes `after` for this store's backend (the start of the feed
    /// when `None`).
    fn after(&self, after: Option<&str>) -> Result<After<'_>, StoreError> {
        let cursor = match after {
            None => None,
            Some(raw) => Some((
                raw,
                Cursor::decode(raw).ok_or_else(|| invalid(raw, "not a feed cursor"))?,
            )),
        };
        Ok(match (&self.inner, cursor) {
            (Inner::Sqlite { read, .. }, None) => After::Sqlite(read, 0),
            (Inner::Sqlite { read, .. }, Some((_, Cursor::Sqlite(id)))) => After::Sqlite(read, id),
            (Inner::Postgres(pool), None) => After::Postgres(pool, "0".into(), String::new(), 0),
            (
                Inner::Postgres(pool),
                Some((
                    _,
                    Cursor::Postgres {
                        tx,
                        session_id,
                        seq,
                    },
                )),
            ) => After::Postgres(pool, tx.to_string(), session_id, seq),
            (Inner::Postgres(_), Some((raw, Cursor::Sqlite(_)))) => {
                return Err(invalid(raw, "a SQLite store's cursor, this is PostgreSQL"));
            }
            (Inner::Sqlite { .. }, Some((raw, Cursor::Postgres { .. }))) => {
                return Err(invalid(raw, "a PostgreSQL store's cursor, this is SQLite"));
            }
        })
    }

    /// The cursor of the event at `pos` (the SQLite feed id, or the
    /// PostgreSQL transaction id) of `session_id`.
    fn cursor_at(&self, pos: &str, session_id: &str, seq: i64) -> Result<Cursor, StoreError> {
        Ok(match self.inner {
            Inner::Postgres(_) => Cursor::Postgres {
                tx: pos.parse().map_err(|_| StoreError::Corrupt {
                    table: "session_events",
                    detail: format!("transaction id `{pos}` is not a number"),
                })?,
                session_id: session_id.to_owned(),
                seq,
            },
            Inner::Sqlite { .. } => {
                Cursor::Sqlite(pos.parse().map_err(|_| StoreError::Corrupt {
                    table: "event_feed",
                    detail: format!("id `{pos}` is not a number"),
                })?)
            }
        })
    }

    /// The aggregator's end of the handoff from this store's writer (see
    /// [`super::handoff`]), keeping at most `capacity` commits: on SQLite,
    /// once per store; `None` otherwise.
    pub fn funnel_handoff(&self, capacity: usize) -> Option<Receiver> {
        match self.inner {
            Inner::Sqlite { .. } => self.handoff.open(capacity),
            Inner::Postgres(_) => None,
        }
    }

    /// Up to `limit` events after `after`, as the funnel aggregator folds
    /// them: the events of [`Store::event_feed`] with its cursors, but only
    /// the payload fields a funnel reads. With a `handoff` that holds every
    /// event of the page, only the page's sessions and seqs are read.
    /// No page limit: the aggregator sizes its batches.
    pub async fn funnel_feed(
        &self,
        after: Option<&str>,
        limit: i64,
        handoff: Option<&mut Receiver>,
    ) -> Result<FunnelPage, StoreError> {
        let limit = limit.max(1);
        let mut page = FunnelPage::default();
        match self.after(after)? {
            After::Sqlite(read, id) => {
                if let Some(handoff) = handoff {
                    return sqlite_handed_page(read, id, limit, handoff).await;
                }
                let (json, last, count): (String, Option<i64>, i64) = sqlx::query_as(
                    "WITH page AS (SELECT f.id, e.session_id, e.seq, e.kind, e.created_at, e.payload \
                     FROM event_feed f \
                     JOIN session_events e ON e.session_id = f.session_id AND e.seq = f.seq \
                     WHERE f.id > ?1 ORDER BY f.id LIMIT ?2) \
                     SELECT '[' || COALESCE(group_concat('[' || json_quote(session_id) || ',' \
                     || seq || ',' || json_quote(kind) || ',' || created_at || ',' || payload \
                     || ']', ',' \
                     ORDER BY id), '') || ']', MAX(id), COUNT(*) FROM page",
                )
                .bind(id)
                .bind(limit)
                .fetch_one(read)
                .await?;
                page.raw = RawPage::Json(json);
                page.events = usize::try_from(count).unwrap_or(0);
                page.end = last.map(|id| Cursor::Sqlite(id).encode());
            }
            After::Postgres(pool, tx, session_id, seq) => {
                let rows: Vec<(String, String, i64, String, i64, String)> = sqlx::query_as(
                    "SELECT e.tx::text, e.session_id, e.seq, e.kind, e.created_at, e.payload \
                     FROM session_events e \
                     WHERE (e.tx, e.session_id, e.seq) > ($1::text::xid8, $2, $3) \
                     AND e.tx < pg_snapshot_xmin(pg_current_snapshot()) \
                     ORDER BY e.tx, e.session_id, e.seq LIMIT $4",
                )
                .bind(tx)
                .bind(session_id)
                .bind(seq)
                .bind(limit)
                .fetch_all(pool)
                .await?;
                if let Some((pos, session_id, seq, ..)) = rows.last() {
                    page.end = Some(self.cursor_at(pos, session_id, *seq)?.encode());
                }
                page.events = rows.len();
                page.raw = RawPage::Rows(
                    rows.into_iter()
                        .map(|(_, session_id, seq, kind, created_at, payload)| {
                            (session_id, seq, kind, created_at, payload)
                        })
                        .collect(),
                );
            }
        }
        Ok(page)
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
