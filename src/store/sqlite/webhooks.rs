//! Webhook state on SQLite (migrations/sqlite/0003_webhooks.sql). Delivery rows are written by the
//! outbox trigger in each appending transaction; this claims, records and lists them. Like the
//! consumer groups, next attempts and leases are Unix milliseconds from this process's clock.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use uuid::Uuid;

use super::time;
use super::{row_event, SqliteStore, COLUMNS};
use crate::error::{EventBusError, Result};
use crate::event::{format_timestamp, SharedEvent};
use crate::store::time::millis;
use crate::store::unavailable;
use crate::store::webhooks::{
    tally, Attempt, Delivery, DeliveryQuery, DeliveryStatus, Disabled, DueDelivery, Endpoint,
    EndpointHealth, EndpointPatch, EndpointTally, NewEndpoint, Next, OutboxDepth, Outcome,
    WebhookStore,
};

const ENDPOINT_COLUMNS: &str = "id, url, events, tenant_id, project_id, description, secret, \
     previous_secret, previous_secret_until, enabled, disabled_reason, consecutive_failures, \
     created_at, updated_at";

/// Deliveries (`d`) with their event's id and type from the log (`e`) or the archive (`a`).
const DELIVERY_COLUMNS: &str = "d.id, d.endpoint_id, d.position, d.status, d.attempts, \
     d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.updated_at, \
     COALESCE(e.id, a.id) AS event_id, COALESCE(e.type, a.type) AS event_type";

fn bad(what: &str, e: impl std::fmt::Display) -> EventBusError {
    EventBusError::StoreUnavailable(format!("{what}: {e}"))
}

fn from_ms(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| bad("reading a webhook time", format!("{ms} ms is out of range")))
}

fn uuid(text: &str) -> Result<Uuid> {
    Uuid::try_parse(text).map_err(|e| bad("reading a webhook endpoint id", e))
}

fn id_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

fn endpoint_row(row: &SqliteRow) -> Result<Endpoint> {
    let fail = |e| unavailable("reading a webhook endpoint", e);
    let id: String = row.try_get("id").map_err(fail)?;
    let events: String = row.try_get("events").map_err(fail)?;
    let previous_until: Option<String> = row.try_get("previous_secret_until").map_err(fail)?;
    let failures: i64 = row.try_get("consecutive_failures").map_err(fail)?;
    let created: String = row.try_get("created_at").map_err(fail)?;
    let updated: String = row.try_get("updated_at").map_err(fail)?;
    Ok(Endpoint {
        id: uuid(&id)?,
        url: row.try_get("url").map_err(fail)?,
        events: serde_json::from_str(&events)
            .map_err(|e| bad("reading a webhook endpoint's events", e))?,
        tenant_id: row.try_get("tenant_id").map_err(fail)?,
        project_id: row.try_get("project_id").map_err(fail)?,
        description: row.try_get("description").map_err(fail)?,
        secret: row.try_get("secret").map_err(fail)?,
        previous_secret: row.try_get("previous_secret").map_err(fail)?,
        previous_secret_until: previous_until.as_deref().map(time).transpose()?,
        enabled: row.try_get("enabled").map_err(fail)?,
        disabled_reason: row.try_get("disabled_reason").map_err(fail)?,
        consecutive_failures: failures.clamp(0, i64::from(u32::MAX)) as u32,
        created_at: time(&created)?,
        updated_at: time(&updated)?,
    })
}

fn attempt_row(row: &SqliteRow) -> Result<(u64, Attempt)> {
    let fail = |e| unavailable("reading webhook attempts", e);
    let delivery: i64 = row.try_get("delivery_id").map_err(fail)?;
    let attempt: i64 = row.try_get("attempt").map_err(fail)?;
    let at: String = row.try_get("at").map_err(fail)?;
    let status: Option<i64> = row.try_get("status_code").map_err(fail)?;
    let latency: i64 = row.try_get("latency_ms").map_err(fail)?;
    Ok((
        delivery as u64,
        Attempt {
            attempt: attempt.clamp(0, i64::from(u32::MAX)) as u32,
            at: time(&at)?,
            status_code: status.and_then(|s| u16::try_from(s).ok()),
            error: row.try_get("error").map_err(fail)?,
            latency_ms: latency.clamp(0, i64::from(u32::MAX)) as u32,
            response_body: row.try_get("response_body").map_err(fail)?,
        },
    ))
}

fn delivery_row(row: &SqliteRow) -> Result<Delivery> {
    let fail = |e| unavailable("reading webhook deliveries", e);
    let id: i64 = row.try_get("id").map_err(fail)?;
    let endpoint: String = row.try_get("endpoint_id").map_err(fail)?;
    let position: i64 = row.try_get("position").map_err(fail)?;
    let attempts: i64 = row.try_get("attempts").map_err(fail)?;
    let status: String = row.try_get("status").map_err(fail)?;
    let next: i64 = row.try_get("next_attempt_at").map_err(fail)?;
    let last_status: Option<i64> = row.try_get("last_status").map_err(fail)?;
    let created: String = row.try_get("created_at").map_err(fail)?;
    let updated: String = row.try_get("updated_at").map_err(fail)?;
    let event_id: Option<String> = row.try_get("event_id").map_err(fail)?;
    let status = DeliveryStatus::parse(&status).ok_or_else(|| {
        EventBusError::StoreUnavailable(format!("unknown delivery status {status:?}"))
    })?;
    Ok(Delivery {
        id: id as u64,
        endpoint_id: uuid(&endpoint)?,
        position: position as u64,
        event_id: event_id
            .as_deref()
            .map(Uuid::try_parse)
            .transpose()
            .map_err(|e| bad("reading a delivery's event id", e))?,
        event_type: row.try_get("event_type").map_err(fail)?,
        status,
        attempts: attempts.clamp(0, i64::from(u32::MAX)) as u32,
        next_attempt_at: match status {
            DeliveryStatus::Pending | DeliveryStatus::Retrying => Some(from_ms(next)?),
            DeliveryStatus::Delivered | DeliveryStatus::Dead => None,
        },
        last_status: last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.try_get("last_error").map_err(fail)?,
        created_at: time(&created)?,
        updated_at: time(&updated)?,
        attempt_log: Vec::new(),
    })
}

/// Due deliveries of enabled endpoints, oldest first; `?1` is now in Unix milliseconds.
const DUE: &str = "SELECT d.id, d.attempts, d.endpoint_id, d.position, w.url, w.secret,
        w.previous_secret, w.previous_secret_until
     FROM event_bus_webhook_deliveries d
     JOIN event_bus_webhook_endpoints w ON w.id = d.endpoint_id AND w.enabled
     WHERE d.status IN ('pending', 'retrying') AND d.next_attempt_at <= ?1
       AND (d.lease_until IS NULL OR d.lease_until <= ?1)
       AND d.endpoint_id NOT IN (SELECT value FROM json_each(?3))
     ORDER BY d.next_attempt_at, d.id";

/// A list of integers as one JSON array parameter, unpacked in SQL by `json_each`.
fn json_ids(ids: &[i64]) -> String {
    serde_json::Value::from(ids.to_vec()).to_string()
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn outbox_depth(&self) -> Result<OutboxDepth> {
        // Through the partial index of undelivered rows (migration: outbox depth index).
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM event_bus_webhook_deliveries
             WHERE status IN ('pending', 'retrying', 'dead') GROUP BY status",
        )
        .fetch_all(self.pooled())
        .await
        .map_err(|e| unavailable("counting the webhook outbox", e))?;
        let mut depth = OutboxDepth::default();
        for (status, n) in rows {
            depth.add(&status, n.max(0) as u64);
        }
        Ok(depth)
    }

    async fn insert_endpoint(&self, e: &NewEndpoint) -> Result<Endpoint> {
        let events =
            serde_json::to_string(&e.events).map_err(|e| bad("encoding webhook events", e))?;
        let now = format_timestamp(&Utc::now());
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO event_bus_webhook_endpoints
               (id, url, events, type_regex, tenant_id, project_id, description, secret, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             RETURNING {ENDPOINT_COLUMNS}"
        )))
        .bind(id_text(e.id))
        .bind(&e.url)
        .bind(events)
        .bind(&e.type_regex)
        .bind(&e.tenant_id)
        .bind(&e.project_id)
        .bind(&e.description)
        .bind(&e.secret)
        .bind(&now)
        .bind(&now)
        .fetch_one(self.pooled())
        .await
        .map_err(|e| unavailable("registering a webhook endpoint", e))?;
        endpoint_row(&row)
    }

    async fn endpoints(&self, tenant_id: Option<&str>) -> Result<Vec<Endpoint>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM event_bus_webhook_endpoints
             WHERE ?1 IS NULL OR tenant_id = ?1 ORDER BY created_at, id"
        )))
        .bind(tenant_id)
        .fetch_all(self.pooled())
        .await
        .map_err(|e| unavailable("listing webhook endpoints", e))?;
        rows.iter().map(endpoint_row).collect()
    }

    async fn endpoint(&self, id: Uuid) -> Result<Option<Endpoint>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM event_bus_webhook_endpoints WHERE id = ?"
        )))
        .bind(id_text(id))
        .fetch_optional(self.pooled())
        .await
        .map_err(|e| unavailable("reading a webhook endpoint", e))?;
        row.as_ref().map(endpoint_row).transpose()
    }

    async fn update_endpoint(&self, id: Uuid, patch: &EndpointPatch) -> Result<Option<Endpoint>> {
        let (events, regex) = match &patch.events {
            Some((events, regex)) => (
                Some(serde_json::to_string(events).map_err(|e| bad("encoding webhook events", e))?),
                Some(regex),
            ),
            None => (None, None),
        };
        let (new_secret, previous_until) = match &patch.rotate {
            Some((secret, until)) => (Some(secret), Some(format_timestamp(until))),
            None => (None, None),
        };
        let switch = patch.switch();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE event_bus_webhook_endpoints SET
               url = COALESCE(?2, url),
               events = COALESCE(?3, events),
               type_regex = COALESCE(?4, type_regex),
               enabled = COALESCE(?5, enabled),
               disabled_reason = CASE WHEN ?5 IS NULL THEN disabled_reason ELSE ?11 END,
               consecutive_failures = CASE WHEN ?12 THEN 0 ELSE consecutive_failures END,
               description = CASE WHEN ?6 THEN ?7 ELSE description END,
               previous_secret = CASE WHEN ?8 IS NULL THEN previous_secret ELSE secret END,
               previous_secret_until = CASE WHEN ?8 IS NULL THEN previous_secret_until ELSE ?9 END,
               secret = COALESCE(?8, secret),
               updated_at = ?10
             WHERE id = ?1
             RETURNING {ENDPOINT_COLUMNS}"
        )))
        .bind(id_text(id))
        .bind(&patch.url)
        .bind(events)
        .bind(regex)
        .bind(switch.map(|s| s.enabled))
        .bind(patch.description.is_some())
        .bind(patch.description.clone().flatten())
        .bind(new_secret)
        .bind(previous_until)
        .bind(format_timestamp(&Utc::now()))
        .bind(switch.and_then(|s| s.disabled_reason))
        .bind(switch.is_some_and(|s| s.reset_failures))
        .fetch_optional(self.pooled())
        .await
        .map_err(|e| unavailable("updating a webhook endpoint", e))?;
        row.as_ref().map(endpoint_row).transpose()
    }

    async fn remove_endpoint(&self, id: Uuid) -> Result<bool> {
        // Deliveries and their attempts go with it (ON DELETE CASCADE; sqlx turns foreign keys on).
        let done = sqlx::query("DELETE FROM event_bus_webhook_endpoints WHERE id = ?")
            .bind(id_text(id))
            .execute(self.pooled())
            .await
            .map_err(|e| unavailable("removing a webhook endpoint", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn claim_due(
        &self,
        limit: usize,
        lease: Duration,
        skip: &[Uuid],
    ) -> Result<Vec<DueDelivery>> {
        let skip =
            serde_json::Value::from(skip.iter().map(|id| id.to_string()).collect::<Vec<_>>())
                .to_string();
        let fail = |e| unavailable("claiming webhook deliveries", e);
        let now = Utc::now();
        let now_ms = now.timestamp_millis();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Most polls find nothing due: look first without taking the write lock.
        let any: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{DUE} LIMIT 1")))
            .bind(now_ms)
            .bind(1i64)
            .bind(&skip)
            .fetch_optional(self.pooled())
            .await
            .map_err(fail)?;
        if any.is_none() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self
            .pooled()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(fail)?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{DUE} LIMIT ?2")))
            .bind(now_ms)
            .bind(limit)
            .bind(&skip)
            .fetch_all(&mut *tx)
            .await
            .map_err(fail)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let read = |e| unavailable("reading claimed webhook deliveries", e);
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("id").map_err(read)?;
            let attempts: i64 = row.try_get("attempts").map_err(read)?;
            let endpoint: String = row.try_get("endpoint_id").map_err(read)?;
            let position: i64 = row.try_get("position").map_err(read)?;
            let secret: String = row.try_get("secret").map_err(read)?;
            let previous: Option<String> = row.try_get("previous_secret").map_err(read)?;
            let previous_until: Option<String> =
                row.try_get("previous_secret_until").map_err(read)?;
            let previous_valid = match previous_until {
                Some(until) => time(&until)? > now,
                None => false,
            };
            claimed.push((
                id,
                attempts.clamp(0, i64::from(u32::MAX)) as u32,
                uuid(&endpoint)?,
                position,
                row.try_get::<String, _>("url").map_err(read)?,
                std::iter::once(secret)
                    .chain(previous.filter(|_| previous_valid))
                    .collect::<Vec<_>>(),
            ));
        }
        let ids: Vec<i64> = claimed.iter().map(|c| c.0).collect();
        sqlx::query(
            "UPDATE event_bus_webhook_deliveries SET lease_until = ?
             WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(now_ms.saturating_add(millis(lease)))
        .bind(json_ids(&ids))
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        // The event comes from the log, or from the archive if it moved there meanwhile (one
        // statement, so one snapshot: an event being archived is found in exactly one of them).
        let positions: Vec<i64> = claimed.iter().map(|c| c.3).collect();
        let positions = json_ids(&positions);
        let events = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM event_bus_events WHERE position IN (SELECT value FROM json_each(?1))
             UNION ALL
             SELECT {COLUMNS} FROM event_bus_events_archive WHERE position IN (SELECT value FROM json_each(?1))"
        )))
        .bind(positions)
        .fetch_all(self.pooled())
        .await
        .map_err(read)?;
        let mut by_position: HashMap<u64, SharedEvent> = HashMap::with_capacity(events.len());
        for row in &events {
            let event = row_event(row)?;
            by_position.insert(event.position, event);
        }
        // A delivery whose event is gone (purged from the archive) stays leased and is skipped,
        // as on PostgreSQL.
        let mut due: Vec<DueDelivery> = claimed
            .into_iter()
            .filter_map(|(id, attempts, endpoint_id, position, url, secrets)| {
                let event = by_position.get(&(position as u64))?.clone();
                Some(DueDelivery {
                    id: id as u64,
                    attempts,
                    endpoint_id,
                    url,
                    secrets,
                    event,
                })
            })
            .collect();
        due.sort_by_key(|d| d.id);
        Ok(due)
    }

    async fn record(&self, outcomes: &[Outcome], disable_after: u32) -> Result<Vec<Disabled>> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let fail = |e| unavailable("recording webhook attempts", e);
        let now = format_timestamp(&Utc::now());
        let mut tx = self
            .pooled()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(fail)?;
        for o in outcomes {
            let a = &o.attempt;
            // A delivery removed meanwhile (with its endpoint) has nothing to record.
            sqlx::query(
                "INSERT INTO event_bus_webhook_attempts
                   (delivery_id, attempt, at, status_code, error, latency_ms, response_body)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
                 WHERE EXISTS (SELECT 1 FROM event_bus_webhook_deliveries WHERE id = ?1)
                 ON CONFLICT DO NOTHING",
            )
            .bind(o.delivery_id as i64)
            .bind(i64::from(a.attempt))
            .bind(format_timestamp(&a.at))
            .bind(a.status_code.map(i64::from))
            .bind(&a.error)
            .bind(i64::from(a.latency_ms))
            .bind(&a.response_body)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
            let (status, next) = match o.next {
                Next::Delivered => ("delivered", None),
                Next::RetryAt(at) => ("retrying", Some(at.timestamp_millis())),
                Next::Dead | Next::Gone => ("dead", None),
            };
            sqlx::query(
                "UPDATE event_bus_webhook_deliveries SET
                   status = ?2, attempts = ?3, next_attempt_at = COALESCE(?4, next_attempt_at),
                   lease_until = NULL, last_status = ?5, last_error = ?6, updated_at = ?7
                 WHERE id = ?1",
            )
            .bind(o.delivery_id as i64)
            .bind(status)
            .bind(i64::from(a.attempt))
            .bind(next)
            .bind(a.status_code.map(i64::from))
            .bind(&a.error)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        }
        let mut disabled = Vec::new();
        for t in tally(outcomes).into_iter().filter(EndpointTally::changes) {
            let current: Option<(bool, i64)> = sqlx::query_as(
                "SELECT enabled, consecutive_failures FROM event_bus_webhook_endpoints WHERE id = ?",
            )
            .bind(id_text(t.endpoint_id))
            .fetch_optional(&mut *tx)
            .await
            .map_err(fail)?;
            let Some((enabled, failures)) = current else {
                continue;
            };
            let before = EndpointHealth {
                enabled,
                consecutive_failures: failures.clamp(0, i64::from(u32::MAX)) as u32,
            };
            let verdict = t.verdict(before, disable_after);
            sqlx::query(
                "UPDATE event_bus_webhook_endpoints
                 SET consecutive_failures = ?2, enabled = ?3,
                     disabled_reason = COALESCE(?4, disabled_reason), updated_at = ?5
                 WHERE id = ?1",
            )
            .bind(id_text(t.endpoint_id))
            .bind(i64::from(verdict.consecutive_failures))
            .bind(enabled && verdict.disable.is_none())
            .bind(&verdict.disable)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
            if let Some(reason) = verdict.disable {
                disabled.push(Disabled {
                    endpoint_id: t.endpoint_id,
                    reason,
                });
            }
        }
        tx.commit().await.map_err(fail)?;
        Ok(disabled)
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>> {
        let fail = |e| unavailable("listing webhook deliveries", e);
        // The event id filter becomes positions through the ids' unique indexes.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM event_bus_webhook_deliveries d
             LEFT JOIN event_bus_events e ON e.position = d.position
             LEFT JOIN event_bus_events_archive a ON a.position = d.position
             WHERE (?1 IS NULL OR d.endpoint_id = ?1) AND (?2 IS NULL OR d.status = ?2)
               AND (?4 IS NULL OR d.position IN (
                     SELECT position FROM event_bus_events WHERE id = ?4
                     UNION ALL
                     SELECT position FROM event_bus_events_archive WHERE id = ?4))
             ORDER BY d.id DESC LIMIT ?3"
        )))
        .bind(query.endpoint_id.map(id_text))
        .bind(query.status.map(DeliveryStatus::as_str))
        .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
        .bind(query.event_id.map(id_text))
        .fetch_all(self.pooled())
        .await
        .map_err(fail)?;
        let mut deliveries = rows.iter().map(delivery_row).collect::<Result<Vec<_>>>()?;
        if deliveries.is_empty() {
            return Ok(deliveries);
        }
        let ids: Vec<i64> = deliveries.iter().map(|d| d.id as i64).collect();
        let attempts = sqlx::query(
            "SELECT delivery_id, attempt, at, status_code, error, latency_ms, response_body
             FROM event_bus_webhook_attempts WHERE delivery_id IN (SELECT value FROM json_each(?))
             ORDER BY delivery_id, attempt",
        )
        .bind(json_ids(&ids))
        .fetch_all(self.pooled())
        .await
        .map_err(fail)?;
        let mut by_delivery: HashMap<u64, Vec<Attempt>> = HashMap::new();
        for row in &attempts {
            let (id, attempt) = attempt_row(row)?;
            by_delivery.entry(id).or_default().push(attempt);
        }
        for d in &mut deliveries {
            d.attempt_log = by_delivery.remove(&d.id).unwrap_or_default();
        }
        Ok(deliveries)
    }

    async fn replay(&self, delivery_id: u64) -> Result<bool> {
        let now = Utc::now();
        let done = sqlx::query(
            "UPDATE event_bus_webhook_deliveries
             SET status = 'pending', next_attempt_at = ?2, lease_until = NULL, updated_at = ?3
             WHERE id = ?1",
        )
        .bind(delivery_id as i64)
        .bind(now.timestamp_millis())
        .bind(format_timestamp(&now))
        .execute(self.pooled())
        .await
        .map_err(|e| unavailable("replaying a webhook delivery", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn replay_failed(&self, endpoint_id: Uuid, since: Option<DateTime<Utc>>) -> Result<u64> {
        // created_at is RFC 3339 text with milliseconds and `Z` (format_timestamp and the trigger
        // write the same form), so text order is time order.
        let now = Utc::now();
        let done = sqlx::query(
            "UPDATE event_bus_webhook_deliveries
             SET status = 'pending', next_attempt_at = ?3, lease_until = NULL, updated_at = ?4
             WHERE endpoint_id = ?1 AND status = 'dead' AND (?2 IS NULL OR created_at >= ?2)",
        )
        .bind(id_text(endpoint_id))
        .bind(since.as_ref().map(format_timestamp))
        .bind(now.timestamp_millis())
        .bind(format_timestamp(&now))
        .execute(self.pooled())
        .await
        .map_err(|e| unavailable("replaying failed webhook deliveries", e))?;
        Ok(done.rows_affected())
    }
}
