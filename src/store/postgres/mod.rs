//! PostgreSQL: the production store.
//!
//! Appends take a transaction-scoped advisory lock before inserting, so positions (an identity
//! column) are assigned in commit order across every process: a reader asking for
//! `position > last` can never miss an event whose transaction committed late. Each group commit
//! is one multi-row `INSERT … SELECT FROM UNNEST(…)`, one autocommit statement (lock and doorbell
//! included): inline when the bus generated every id, through `event_bus_append` (migration 6) when
//! callers chose ids. An id that is already stored, or repeated in the batch, takes a transaction
//! instead, which compares the content and can refuse a request whole.

mod append;
mod connect;
mod doorbell;
mod groups;
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::error::{EventBusError, Result};
use crate::event::{Event, SharedEvent, StoredEvent};
use crate::query::Query;
use crate::store::group_bell::GroupBell;
use crate::store::sql::{push_common_filters, push_order_and_limit};
use crate::store::{migrate, unavailable, Appended, Store, StoreOptions};
use connect::first_connection;

/// Key of the advisory lock that serialises appends (shared with SQL-side publishers).
pub const APPEND_LOCK: i64 = 0x5e17_ba5e;

pub(super) const COLUMNS: &str = r#"position, id, type, payload::text AS payload, "timestamp", project_id, tenant_id, user_id, metadata::text AS metadata"#;

pub(crate) struct PostgresStore {
    /// Reads, archiving, migrations and consumer-group state.
    pub(super) pool: PgPool,
    /// Counts acquires from `pool` that wait (queries take the pool through `pooled`).
    meter: crate::store::pool::PoolMeter,
    /// The batcher is the only appender: it keeps a connection of its own, so a group commit never
    /// waits for the pool or its liveness ping. Dropped on any error, reopened by the next append.
    writer: tokio::sync::Mutex<Option<PgConnection>>,
    connect: PgConnectOptions,
    connect_timeout: Duration,
    /// NOTIFY channel of this schema's log, and this store's token in its payloads (so an
    /// instance does not wake itself).
    pub(super) channel: String,
    token: String,
    /// Consumer-group members of this instance; rung by the doorbell for other instances' rings.
    pub(crate) bell: Arc<GroupBell>,
    /// Since when the LISTEN connection has been down (None while it is up), for health.
    listener_down: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

fn decode(context: &str, err: impl std::fmt::Display) -> EventBusError {
    EventBusError::StoreUnavailable(format!("{context}: {err}"))
}

pub(crate) fn raw_json(text: String, column: &str) -> Result<Box<RawValue>> {
    RawValue::from_string(text).map_err(|e| decode(&format!("stored {column} is not JSON"), e))
}

pub(super) fn row_event(row: &PgRow) -> Result<SharedEvent> {
    let get = |e: sqlx::Error| decode("reading an event row", e);
    let position: i64 = row.try_get("position").map_err(get)?;
    let metadata: Option<String> = row.try_get("metadata").map_err(get)?;
    let event = Event {
        id: row.try_get("id").map_err(get)?,
        event_type: row.try_get("type").map_err(get)?,
        payload: raw_json(row.try_get("payload").map_err(get)?, "payload")?,
        timestamp: row.try_get("timestamp").map_err(get)?,
        project_id: row.try_get("project_id").map_err(get)?,
        tenant_id: row.try_get("tenant_id").map_err(get)?,
        user_id: row.try_get("user_id").map_err(get)?,
        metadata: metadata.map(|m| raw_json(m, "metadata")).transpose()?,
        id_generated: false,
    };
    Ok(Arc::new(StoredEvent::new(event, position as u64)))
}

impl PostgresStore {
    pub(crate) async fn open(url: &str, options: &StoreOptions) -> Result<PostgresStore> {
        let connect = PgConnectOptions::from_str(url).map_err(|e| {
            EventBusError::InvalidConfig(format!("storeUrl is not a valid PostgreSQL URL: {e}"))
        })?;
        // One connection of our own first: the pool retries a refused connection until its
        // acquire timeout and then reports only that it timed out.
        let writer = first_connection(&connect, options.acquire_timeout).await?;
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(|e| unavailable("connecting to PostgreSQL", e))?;
        migrate::run(migrate::Backend::Postgres, &pool).await?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(&pool)
            .await
            .map_err(|e| unavailable("reading the current schema", e))?;
        Ok(PostgresStore {
            pool,
            writer: tokio::sync::Mutex::new(Some(writer)),
            connect,
            connect_timeout: options.acquire_timeout,
            channel: format!("event_bus:{schema}"),
            token: Uuid::now_v7().simple().to_string(),
            bell: Arc::default(),
            listener_down: Arc::default(),
            meter: Default::default(),
        })
    }

    /// The pool, for one query about to take a connection (counted, see `store::pool`).
    pub(super) fn pooled(&self) -> &PgPool {
        self.meter.pool(&self.pool)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn append(&self, requests: Vec<Vec<Event>>) -> Vec<Result<Vec<Appended>>> {
        self.append_requests(requests).await
    }

    async fn query(&self, query: &Query) -> Result<Vec<SharedEvent>> {
        let mut sql = QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM "));
        if query.include_archived {
            sql.push(
                r#"(SELECT position, id, type, payload, "timestamp", project_id, tenant_id, user_id, metadata FROM event_bus_events
                    UNION ALL
                    SELECT position, id, type, payload, "timestamp", project_id, tenant_id, user_id, metadata FROM event_bus_events_archive) AS e"#,
            );
        } else {
            sql.push("event_bus_events");
        }
        sql.push(" WHERE true");
        push_filters(&mut sql, query);
        push_order_and_limit(&mut sql, query);
        let rows = sql
            .build()
            .fetch_all(self.pooled())
            .await
            .map_err(|e| unavailable("reading events", e))?;
        rows.iter().map(row_event).collect()
    }

    async fn archive_batch(&self, older_than: DateTime<Utc>, batch: usize) -> Result<u64> {
        let done = sqlx::query(
            r#"WITH moved AS (
                 DELETE FROM event_bus_events WHERE position IN (
                   SELECT position FROM event_bus_events WHERE "timestamp" < $1
                   ORDER BY position LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING position, id, type, payload, "timestamp", project_id, tenant_id, user_id, metadata)
               INSERT INTO event_bus_events_archive (position, id, type, payload, "timestamp", project_id, tenant_id, user_id, metadata)
               SELECT * FROM moved ON CONFLICT (position) DO NOTHING"#,
        )
        .bind(older_than)
        .bind(batch as i64)
        .execute(self.pooled())
        .await
        .map_err(|e| unavailable("archiving events", e))?;
        Ok(done.rows_affected())
    }

    async fn purge_archive_batch(
        &self,
        archived_before: DateTime<Utc>,
        batch: usize,
    ) -> Result<u64> {
        let done = sqlx::query(
            r#"DELETE FROM event_bus_events_archive WHERE position IN (
                 SELECT position FROM event_bus_events_archive WHERE archived_at < $1
                 ORDER BY position LIMIT $2 FOR UPDATE SKIP LOCKED)"#,
        )
        .bind(archived_before)
        .bind(batch as i64)
        .execute(self.pooled())
        .await
        .map_err(|e| unavailable("purging archived events", e))?;
        Ok(done.rows_affected())
    }

    fn listener_down_since(&self) -> Option<std::time::Instant> {
        *self.listener_down.lock().unwrap_or_else(|p| p.into_inner())
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

    fn doorbell(&self, wake: Box<dyn Fn() + Send + Sync>) -> Option<tokio::task::JoinHandle<()>> {
        Some(self.spawn_doorbell(wake))
    }

    async fn close(&self) {
        if let Some(writer) = self.writer.lock().await.take() {
            let _ = sqlx::Connection::close(writer).await;
        }
        self.pool.close().await;
    }
}

/// The backend-specific WHERE clauses: type patterns and the timestamp range.
fn push_filters(sql: &mut QueryBuilder<Postgres>, query: &Query) {
    push_common_filters(sql, query);
    if !query.types.is_empty() {
        let exact: Vec<String> = query
            .types
            .iter()
            .filter_map(|p| p.exact().map(str::to_string))
            .collect();
        let regexes: Vec<String> = query
            .types
            .iter()
            .filter(|p| p.exact().is_none())
            .map(|p| p.to_regex())
            .collect();
        // Exact types alone keep the (type, position) index usable.
        match (exact.is_empty(), regexes.is_empty()) {
            (false, true) => sql.push(" AND type = ANY(").push_bind(exact).push(")"),
            (true, false) => sql.push(" AND type ~ ANY(").push_bind(regexes).push(")"),
            _ => sql
                .push(" AND (type = ANY(")
                .push_bind(exact)
                .push(") OR type ~ ANY(")
                .push_bind(regexes)
                .push("))"),
        };
    }
    if let Some(since) = query.since {
        sql.push(r#" AND "timestamp" >= "#).push_bind(since);
    }
    if let Some(until) = query.until {
        sql.push(r#" AND "timestamp" < "#).push_bind(until);
    }
}
