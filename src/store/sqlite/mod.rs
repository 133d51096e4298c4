//! SQLite: the embedded default (`sqlite://./event-bus.db`). SQLite serialises writers (appends run
//! in `BEGIN IMMEDIATE` transactions), so positions are assigned in commit order; WAL mode lets
//! readers run alongside the writer and other processes share the file.

mod groups;
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use crate::error::{EventBusError, Result};
use crate::event::{format_timestamp, Event, SharedEvent, StoredEvent};
use crate::query::Query;
use crate::store::postgres::raw_json;
use crate::store::sql::{push_common_filters, push_order_and_limit};
use crate::store::time::millis;
use crate::store::{existing, migrate, unavailable, Appended, Store, StoreOptions};

pub(super) const COLUMNS: &str =
    "position, id, type, payload, timestamp, project_id, tenant_id, user_id, metadata";

pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// Counts acquires from `pool` that wait (queries take the pool through `pooled`).
    meter: crate::store::pool::PoolMeter,
    /// Consumer-group members on this file in this process (other processes hear of a join at
    /// their next lease renewal: SQLite has no notifications).
    pub(crate) bell: Arc<crate::store::group_bell::GroupBell>,
}

pub(super) fn row_event(row: &SqliteRow) -> Result<SharedEvent> {
    let bad = |e: &dyn std::fmt::Display| {
        EventBusError::StoreUnavailable(format!("reading an event row: {e}"))
    };
    let get = |e: sqlx::Error| bad(&e);
    let id: String = row.try_get("id").map_err(get)?;
    let timestamp: String = row.try_get("timestamp").map_err(get)?;
    let position: i64 = row.try_get("position").map_err(get)?;
    let metadata: Option<String> = row.try_get("metadata").map_err(get)?;
    let event = Event {
        id: Uuid::try_parse(&id).map_err(|e| bad(&e))?,
        event_type: row.try_get("type").map_err(get)?,
        payload: raw_json(row.try_get("payload").map_err(get)?, "payload")?,
        timestamp: DateTime::parse_from_rfc3339(&timestamp)
            .map_err(|e| bad(&e))?
            .with_timezone(&Utc),
        project_id: row.try_get("project_id").map_err(get)?,
        tenant_id: row.try_get("tenant_id").map_err(get)?,
        user_id: row.try_get("user_id").map_err(get)?,
        metadata: metadata.map(|m| raw_json(m, "metadata")).transpose()?,
        id_generated: false,
    };
    Ok(Arc::new(StoredEvent::new(event, position as u64)))
}

/// Reads a time stored as RFC 3339 text, as `format_timestamp` writes it.
pub(super) fn time(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            EventBusError::StoreUnavailable(format!("reading a stored time {text:?}: {e}"))
        })
}

/// Now in Unix milliseconds, as leases are stored: SQLite has no shared clock, so it is this
/// process's.
pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// When a lease taken now ends, in Unix milliseconds.
pub(super) fn until(lease: Duration) -> i64 {
    now_ms().saturating_add(millis(lease))
}

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6): another connection holds the lock right now.
fn is_busy(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("5") | Some("6")))
}

impl SqliteStore {
    pub async fn open(url: &str, options: &StoreOptions) -> Result<SqliteStore> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| {
                EventBusError::InvalidConfig(format!(
                    "storeUrl {url:?} is not a valid SQLite URL: {e}"
                ))
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(options.acquire_timeout.max(Duration::from_secs(1)))
            .with_regexp();
        // Switching a fresh file to WAL needs an exclusive lock and does not wait for one: when
        // another process is opening the same file at that moment, try again shortly.
        let deadline =
            tokio::time::Instant::now() + options.acquire_timeout.max(Duration::from_secs(1));
        let mut attempt = 0u32;
        let pool = loop {
            let opened = SqlitePoolOptions::new()
                .max_connections(options.pool_size)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect.clone())
                .await;
            match opened {
                Ok(pool) => break pool,
                Err(e) if is_busy(&e) && tokio::time::Instant::now() < deadline => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt.min(10))))
                        .await;
                }
                Err(e) => return Err(unavailable("opening the SQLite database", e)),
            }
        };
        migrate::run(migrate::Backend::Sqlite, &pool).await?;
        // One bell per file, whatever path spelling each bus was given.
        let file = connect.get_filename();
        let key = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        let bell = crate::store::group_bell::shared(&key.to_string_lossy());
        Ok(SqliteStore {
            pool,
            bell,
            meter: Default::default(),
        })
    }

    /// The pool, for one query about to take a connection (counted, see `store::pool`).
    pub(super) fn pooled(&self) -> &SqlitePool {
        self.meter.pool(&self.pool)
    }

    /// Every id was generated by the bus, so nothing can conflict: the whole batch is one
    /// multi-row insert (rows passed as one JSON array, unpacked by `json_each`).
    async fn append_generated_ids(
        &self,
        requests: Vec<Vec<Event>>,
    ) -> Result<Vec<Result<Vec<Appended>>>> {
        let fail = |e| unavailable("appending events", e);
        let rows: Vec<[Option<String>; 8]> = requests
            .iter()
            .flatten()
            .map(|e| {
                [
                    Some(e.id.hyphenated().to_string()),
                    Some(e.event_type.clone()),
                    Some(e.payload.get().to_string()),
                    Some(format_timestamp(&e.timestamp)),
                    e.project_id.clone(),
                    e.tenant_id.clone(),
                    e.user_id.clone(),
                    e.metadata.as_deref().map(|m| m.get().to_string()),
                ]
            })
            .collect();
        let rows = serde_json::to_string(&rows)
            .map_err(|e| EventBusError::StoreUnavailable(format!("encoding a batch: {e}")))?;
        let mut tx = self
            .pooled()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(fail)?;
        let inserted: Vec<(String, i64)> = sqlx::query_as(
            "INSERT INTO event_bus_events (id, type, payload, timestamp, project_id, tenant_id, user_id, metadata)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7
             FROM json_each(?) ORDER BY key
             RETURNING id, position",
        )
        .bind(rows)
        .fetch_all(&mut *tx)
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        let positions: std::collections::HashMap<String, i64> = inserted.into_iter().collect();
        Ok(requests
            .into_iter()
            .map(|events| {
                events
                    .into_iter()
                    .map(|e| {
                        let position = positions
                            .get(&e.id.hyphenated().to_string())
                            .copied()
                            .ok_or_else(|| {
                                EventBusError::StoreUnavailable(format!(
                                    "event {} was not stored",
                                    e.id
                                ))
                            })?;
                        Ok(Appended {
                            event: Arc::new(StoredEvent::new(e, position as u64)),
                            fresh: true,
                        })
                    })
                    .collect()
            })
            .collect())
    }

    /// One request inside the open transaction; an error leaves it to the caller's savepoint.
    async fn append_request(
        conn: &mut SqliteConnection,
        events: Vec<Event>,
    ) -> Result<Vec<Appended>> {
        let fail = |e| unavailable("appending events", e);
        let mut out: Vec<Appended> = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            if let Some(same) = out.iter().find(|a| a.event.event.id == event.id) {
                let same = same.event.clone();
                out.push(existing(&event, &same, i)?);
                continue;
            }
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO event_bus_events (id, type, payload, timestamp, project_id, tenant_id, user_id, metadata)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING position",
            )
            .bind(event.id.hyphenated().to_string())
            .bind(&event.event_type)
            .bind(event.payload.get())
            .bind(format_timestamp(&event.timestamp))
            .bind(event.project_id.as_deref())
            .bind(event.tenant_id.as_deref())
            .bind(event.user_id.as_deref())
            .bind(event.metadata.as_deref().map(RawValue::get))
            .fetch_optional(&mut *conn)
            .await
            .map_err(fail)?;
            match inserted {
                Some(position) => out.push(Appended {
                    event: Arc::new(StoredEvent::new(event, position as u64)),
                    fresh: true,
                }),
                None => {
                    let select = format!("SELECT {COLUMNS} FROM event_bus_events WHERE id = ?");
                    let row = sqlx::query(sqlx::AssertSqlSafe(select))
                        .bind(event.id.hyphenated().to_string())
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(fail)?;
                    out.push(existing(&event, &row_event(&row)?, i)?);
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(&self, requests: Vec<Vec<Event>>) -> Vec<Result<Vec<Appended>>> {
        let count = requests.len();
        let fail = |e| unavailable("appending events", e);
        if requests.iter().flatten().all(|e| e.id_generated) {
            return match self.append_generated_ids(requests).await {
                Ok(results) => results,
                Err(e) => (0..count).map(|_| Err(e.clone())).collect(),
            };
        }
        let mut tx = match self
            .pooled()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(fail)
        {
            Ok(tx) => tx,
            Err(e) => return (0..count).map(|_| Err(e.clone())).collect(),
        };
        let mut results = Vec::with_capacity(count);
        for events in requests {
            // A savepoint per request: a refused request rolls back alone.
            let outcome = match sqlx::query("SAVEPOINT request")
                .execute(&mut *tx)
                .await
                .map_err(fail)
            {
                Err(e) => Err(e),
                Ok(_) => match Self::append_request(&mut tx, events).await {
                    Ok(appended) => sqlx::query("RELEASE request")
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)
                        .map(|_| appended),
                    Err(e) => sqlx::query("ROLLBACK TO request; RELEASE request")
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)
                        .and(Err(e)),
                },
            };
            results.push(outcome);
        }
        if let Err(e) = tx.commit().await.map_err(fail) {
            return (0..count).map(|_| Err(e.clone())).collect();
        }
        results
    }

    async fn query(&self, query: &Query) -> Result<Vec<SharedEvent>> {
        let mut sql = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM "));
        if query.include_archived {
            sql.push(format!(
                "(SELECT {COLUMNS} FROM event_bus_events UNION ALL SELECT {COLUMNS} FROM event_bus_events_archive)"
            ));
        } else {
            sql.push("event_bus_events");
        }
        sql.push(" WHERE 1 = 1");
        push_common_filters(&mut sql, query);
        if !query.types.is_empty() {
            sql.push(" AND (");
            let mut alternatives = sql.separated(" OR ");
            for pattern in &query.types {
                match pattern.exact() {
                    Some(t) => alternatives
                        .push("type = ")
                        .push_bind_unseparated(t.to_string()),
                    None => alternatives
                        .push("type REGEXP ")
                        .push_bind_unseparated(pattern.to_regex()),
                };
            }
            sql.push(")");
        }
        if let Some(since) = query.since {
            sql.push(" AND timestamp >= ")
                .push_bind(format_timestamp(&since));
        }
        if let Some(until) = query.until {
            sql.push(" AND timestamp < ")
                .push_bind(format_timestamp(&until));
        }
        push_order_and_limit(&mut sql, query);
        let rows = sql
            .build()
            .fetch_all(self.pooled())
            .await
            .map_err(|e| unavailable("reading events", e))?;
        rows.iter().map(row_event).collect()
    }

    async fn archive_batch(&self, older_than: DateTime<Utc>, batch: usize) -> Result<u64> {
        let fail = |e| unavailable("archiving events", e);
        let mut tx = self
            .pooled()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(fail)?;
        let positions: Vec<i64> = sqlx::query_scalar(
            "SELECT position FROM event_bus_events WHERE timestamp < ? ORDER BY position LIMIT ?",
        )
        .bind(format_timestamp(&older_than))
        .bind(batch as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(fail)?;
        if positions.is_empty() {
            return Ok(0);
        }
        let (first, last) = (positions[0], positions[positions.len() - 1]);
        // The batch is a position range of old events; the same bounds select it twice.
        sqlx::query(
            "INSERT INTO event_bus_events_archive (position, id, type, payload, timestamp, project_id, tenant_id, user_id, metadata, archived_at)
             SELECT position, id, type, payload, timestamp, project_id, tenant_id, user_id, metadata, ?
             FROM event_bus_events WHERE position BETWEEN ? AND ? AND timestamp < ?
             ON CONFLICT (position) DO NOTHING",
        )
        .bind(format_timestamp(&Utc::now()))
        .bind(first)
        .bind(last)
        .bind(format_timestamp(&older_than))
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        let moved = sqlx::query(
            "DELETE FROM event_bus_events WHERE position BETWEEN ? AND ? AND timestamp < ?",
        )
        .bind(first)
        .bind(last)
        .bind(format_timestamp(&older_than))
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(moved.rows_affected())
    }

    async fn purge_archive_batch(
        &self,
        archived_before: DateTime<Utc>,
        batch: usize,
    ) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM event_bus_events_archive WHERE position IN (
               SELECT position FROM event_bus_events_archive WHERE archived_at < ? ORDER BY position LIMIT ?)",
        )
        .bind(format_timestamp(&archived_before))
        .bind(batch as i64)
        .execute(self.pooled())
        .await
        .map_err(|e| unavailable("purging archived events", e))?;
        Ok(done.rows_affected())
    }

    fn pool_stats(&self) -> Option<crate::store::PoolStats> {
        Some(self.meter.stats(self.pooled()))
    }

    fn groups(&self) -> &dyn crate::store::groups::GroupStore {
        self
    }

    fn webhooks(&self) -> &dyn crate::store::webhooks::WebhookStore {
        self
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
