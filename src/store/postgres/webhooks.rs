//! Webhook state on PostgreSQL (migrations/postgres/0004_webhooks.sql, 0005). Delivery rows are
//! written by the outbox trigger in each appending transaction (present while any endpoint is);
//! this registers endpoints, claims, records and lists deliveries.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use super::{row_event, PostgresStore};
use crate::error::{EventBusError, Result};
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

fn endpoint_row(row: &PgRow) -> Result<Endpoint> {
    let fail = |e| unavailable("reading a webhook endpoint", e);
    let failures: i32 = row.try_get("consecutive_failures").map_err(fail)?;
    Ok(Endpoint {
        id: row.try_get("id").map_err(fail)?,
        url: row.try_get("url").map_err(fail)?,
        events: row.try_get("events").map_err(fail)?,
        tenant_id: row.try_get("tenant_id").map_err(fail)?,
        project_id: row.try_get("project_id").map_err(fail)?,
        description: row.try_get("description").map_err(fail)?,
        secret: row.try_get("secret").map_err(fail)?,
        previous_secret: row.try_get("previous_secret").map_err(fail)?,
        previous_secret_until: row.try_get("previous_secret_until").map_err(fail)?,
        enabled: row.try_get("enabled").map_err(fail)?,
        disabled_reason: row.try_get("disabled_reason").map_err(fail)?,
        consecutive_failures: failures.max(0) as u32,
        created_at: row.try_get("created_at").map_err(fail)?,
        updated_at: row.try_get("updated_at").map_err(fail)?,
    })
}

fn attempt_row(row: &PgRow) -> Result<(u64, Attempt)> {
    let fail = |e| unavailable("reading webhook attempts", e);
    let delivery: i64 = row.try_get("delivery_id").map_err(fail)?;
    let attempt: i32 = row.try_get("attempt").map_err(fail)?;
    let status: Option<i32> = row.try_get("status_code").map_err(fail)?;
    let latency: i32 = row.try_get("latency_ms").map_err(fail)?;
    Ok((
        delivery as u64,
        Attempt {
            attempt: attempt.max(0) as u32,
            at: row.try_get("at").map_err(fail)?,
            status_code: status.and_then(|s| u16::try_from(s).ok()),
            error: row.try_get("error").map_err(fail)?,
            latency_ms: latency.max(0) as u32,
            response_body: row.try_get("response_body").map_err(fail)?,
        },
    ))
}

fn delivery_row(row: &PgRow) -> Result<Delivery> {
    let fail = |e| unavailable("reading webhook deliveries", e);
    let id: i64 = row.try_get("id").map_err(fail)?;
    let position: i64 = row.try_get("position").map_err(fail)?;
    let attempts: i32 = row.try_get("attempts").map_err(fail)?;
    let status: String = row.try_get("status").map_err(fail)?;
    let last_status: Option<i32> = row.try_get("last_status").map_err(fail)?;
    let status = DeliveryStatus::parse(&status).ok_or_else(|| {
        EventBusError::StoreUnavailable(format!("unknown delivery status {status:?}"))
    })?;
    let next: DateTime<Utc> = row.try_get("next_attempt_at").map_err(fail)?;
    Ok(Delivery {
        id: id as u64,
        endpoint_id: row.try_get("endpoint_id").map_err(fail)?,
        position: position as u64,
        event_id: row.try_get("event_id").map_err(fail)?,
        event_type: row.try_get("event_type").map_err(fail)?,
        status,
        attempts: attempts.max(0) as u32,
        next_attempt_at: matches!(status, DeliveryStatus::Pending | DeliveryStatus::Retrying)
            .then_some(next),
        last_status: last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.try_get("last_error").map_err(fail)?,
        created_at: row.try_get("created_at").map_err(fail)?,
        updated_at: row.try_get("updated_at").map_err(fail)?,
        attempt_log: Vec::new(),
    })
}

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

async fn lock_endpoints(tx: &mut Tx) -> sqlx::Result<()> {
    sqlx::query("LOCK TABLE event_bus_webhook_endpoints IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// The outbox trigger exists while any endpoint does (migration 5).
async fn sync_outbox(tx: &mut Tx) -> sqlx::Result<()> {
    sqlx::query("SELECT event_bus_sync_webhook_outbox()")
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Applies the failure rule (`EndpointTally::verdict`) to the endpoints of recorded outcomes, in
/// at most three statements whatever their number; returns those it disabled.
async fn judge_endpoints(
    tx: &mut Tx,
    outcomes: &[Outcome],
    disable_after: u32,
) -> sqlx::Result<Vec<Disabled>> {
    let tallies: Vec<EndpointTally> = tally(outcomes)
        .into_iter()
        .filter(EndpointTally::changes)
        .collect();
    let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    // Successes alone need no read or row lock, and write no new row version where the count is
    // already what they set (the common case; every claim reads this table).
    let (blind, counts): (Vec<Uuid>, Vec<i32>) = tallies
        .iter()
        .filter_map(|t| Some((t.endpoint_id, count(t.stateless_count()?))))
        .unzip();
    if !blind.is_empty() {
        sqlx::query(
            "UPDATE event_bus_webhook_endpoints e
             SET consecutive_failures = u.failures, updated_at = now()
             FROM UNNEST($1::uuid[], $2::int[]) AS u(id, failures)
             WHERE e.id = u.id AND e.consecutive_failures <> u.failures",
        )
        .bind(&blind)
        .bind(&counts)
        .execute(&mut **tx)
        .await?;
    }
    let judged: Vec<&EndpointTally> = tallies
        .iter()
        .filter(|t| t.stateless_count().is_none())
        .collect();
    if judged.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = judged.iter().map(|t| t.endpoint_id).collect();
    // Locked until commit, so the rule reads what it overwrites; in id order, so concurrent
    // recorders lock rows in the same order. Removed endpoints are simply not found.
    let rows: Vec<(Uuid, bool, i32)> = sqlx::query_as(
        "SELECT id, enabled, consecutive_failures FROM event_bus_webhook_endpoints
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    let before: HashMap<Uuid, EndpointHealth> = rows
        .into_iter()
        .map(|(id, enabled, failures)| {
            let consecutive_failures = failures.max(0) as u32;
            (
                id,
                EndpointHealth {
                    enabled,
                    consecutive_failures,
                },
            )
        })
        .collect();
    let mut ids = Vec::with_capacity(before.len());
    let mut counts = Vec::with_capacity(before.len());
    let mut enabled = Vec::with_capacity(before.len());
    let mut reasons: Vec<Option<String>> = Vec::with_capacity(before.len());
    let mut disabled = Vec::new();
    for t in judged {
        let Some(health) = before.get(&t.endpoint_id) else {
            continue;
        };
        let verdict = t.verdict(*health, disable_after);
        ids.push(t.endpoint_id);
        counts.push(count(verdict.consecutive_failures));
        enabled.push(health.enabled && verdict.disable.is_none());
        reasons.push(verdict.disable.clone());
        if let Some(reason) = verdict.disable {
            disabled.push(Disabled {
                endpoint_id: t.endpoint_id,
                reason,
            });
        }
    }
    if !ids.is_empty() {
        sqlx::query(
            "UPDATE event_bus_webhook_endpoints e
             SET consecutive_failures = u.failures, enabled = u.enabled,
                 disabled_reason = COALESCE(u.reason, e.disabled_reason), updated_at = now()
             FROM UNNEST($1::uuid[], $2::int[], $3::bool[], $4::text[])
                  AS u(id, failures, enabled, reason)
             WHERE e.id = u.id",
        )
        .bind(&ids)
        .bind(&counts)
        .bind(&enabled)
        .bind(&reasons)
        .execute(&mut **tx)
        .await?;
    }
    Ok(disabled)
}

#[async_trait]
impl WebhookStore for PostgresStore {
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
        let fail = |e| unavailable("registering a webhook endpoint", e);
        let mut tx = self.pooled().begin().await.map_err(fail)?;
        // First, so concurrent registrations and removals queue here rather than deadlock
        // upgrading their locks in event_bus_sync_webhook_outbox.
        lock_endpoints(&mut tx).await.map_err(fail)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO event_bus_webhook_endpoints
               (id, url, events, type_regex, tenant_id, project_id, description, secret)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING {ENDPOINT_COLUMNS}"
        )))
        .bind(e.id)
        .bind(&e.url)
        .bind(&e.events)
        .bind(&e.type_regex)
        .bind(&e.tenant_id)
        .bind(&e.project_id)
        .bind(&e.description)
        .bind(&e.secret)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
        sync_outbox(&mut tx).await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        endpoint_row(&row)
    }

    async fn endpoints(&self, tenant_id: Option<&str>) -> Result<Vec<Endpoint>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM event_bus_webhook_endpoints
             WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY created_at, id"
        )))
        .bind(tenant_id)
        .fetch_all(self.pooled())
        .await
        .map_err(|e| unavailable("listing webhook endpoints", e))?;
        rows.iter().map(endpoint_row).collect()
    }

    async fn has_endpoints(&self) -> Result<bool> {
        let fail = |e| unavailable("looking for webhook endpoints", e);
        let (any, trigger): (bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM event_bus_webhook_endpoints),
                    EXISTS (SELECT 1 FROM pg_trigger
                            WHERE tgrelid = 'event_bus_events'::regclass
                              AND tgname = 'event_bus_webhook_outbox')",
        )
        .fetch_one(self.pooled())
        .await
        .map_err(fail)?;
        if any && !trigger {
            // Endpoints written without event_bus_sync_webhook_outbox (an older bus, or by hand).
            tracing::warn!("webhook endpoints without the outbox trigger: installing it");
            let mut tx = self.pooled().begin().await.map_err(fail)?;
            lock_endpoints(&mut tx).await.map_err(fail)?;
            sync_outbox(&mut tx).await.map_err(fail)?;
            tx.commit().await.map_err(fail)?;
        }
        Ok(any)
    }

    async fn endpoint(&self, id: Uuid) -> Result<Option<Endpoint>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM event_bus_webhook_endpoints WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pooled())
        .await
        .map_err(|e| unavailable("reading a webhook endpoint", e))?;
        row.as_ref().map(endpoint_row).transpose()
    }

    async fn update_endpoint(&self, id: Uuid, patch: &EndpointPatch) -> Result<Option<Endpoint>> {
        let (events, regex) = match &patch.events {
            Some((events, regex)) => (Some(events), Some(regex)),
            None => (None, None),
        };
        let (new_secret, previous_until) = match &patch.rotate {
            Some((secret, until)) => (Some(secret), Some(*until)),
            None => (None, None),
        };
        let switch = patch.switch();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE event_bus_webhook_endpoints SET
               url = COALESCE($2, url),
               events = COALESCE($3, events),
               type_regex = COALESCE($4, type_regex),
               enabled = COALESCE($5, enabled),
               disabled_reason = CASE WHEN $5::bool IS NULL THEN disabled_reason ELSE $10::text END,
               consecutive_failures = CASE WHEN $11 THEN 0 ELSE consecutive_failures END,
               description = CASE WHEN $6 THEN $7 ELSE description END,
               previous_secret = CASE WHEN $8::text IS NULL THEN previous_secret ELSE secret END,
               previous_secret_until = CASE WHEN $8::text IS NULL THEN previous_secret_until ELSE $9 END,
               secret = COALESCE($8, secret),
               updated_at = now()
             WHERE id = $1
             RETURNING {ENDPOINT_COLUMNS}"
        )))
        .bind(id)
        .bind(&patch.url)
        .bind(events)
        .bind(regex)
        .bind(switch.map(|s| s.enabled))
        .bind(patch.description.is_some())
        .bind(patch.description.clone().flatten())
        .bind(new_secret)
        .bind(previous_until)
        .bind(switch.and_then(|s| s.disabled_reason))
        .bind(switch.is_some_and(|s| s.reset_failures))
        .fetch_optional(self.pooled())
        .await
        .map_err(|e| unavailable("updating a webhook endpoint", e))?;
        row.as_ref().map(endpoint_row).transpose()
    }

    async fn remove_endpoint(&self, id: Uuid) -> Result<bool> {
        let fail = |e| unavailable("removing a webhook endpoint", e);
        let mut tx = self.pooled().begin().await.map_err(fail)?;
        lock_endpoints(&mut tx).await.map_err(fail)?;
        // Appends in flight may be writing deliveries for this endpoint (their foreign-key check
        // would wait for our row lock while we wait for them to drop the trigger: a deadlock,
        // or a failed append once we commit). Let them finish first and hold new ones back.
        sqlx::query("LOCK TABLE event_bus_events IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let done = sqlx::query("DELETE FROM event_bus_webhook_endpoints WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        sync_outbox(&mut tx).await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(done.rows_affected() > 0)
    }

    async fn claim_due(
        &self,
        limit: usize,
        lease: Duration,
        skip: &[Uuid],
    ) -> Result<Vec<DueDelivery>> {
        // The event comes from the log, or from the archive if it moved there meanwhile.
        let rows = sqlx::query(
            r#"WITH due AS (
                 UPDATE event_bus_webhook_deliveries d
                 SET lease_until = now() + $2 * interval '1 millisecond'
                 FROM (SELECT d2.id FROM event_bus_webhook_deliveries d2
                       JOIN event_bus_webhook_endpoints w ON w.id = d2.endpoint_id AND w.enabled
                       WHERE d2.status IN ('pending', 'retrying') AND d2.next_attempt_at <= now()
                         AND (d2.lease_until IS NULL OR d2.lease_until <= now())
                         AND d2.endpoint_id <> ALL($3)
                       ORDER BY d2.next_attempt_at, d2.id LIMIT $1
                       FOR UPDATE OF d2 SKIP LOCKED) AS claimed
                 WHERE d.id = claimed.id
                 RETURNING d.id AS delivery_id, d.attempts, d.endpoint_id, d.position AS event_position)
               SELECT due.delivery_id, due.attempts, due.endpoint_id, w.url, w.secret,
                      CASE WHEN w.previous_secret_until > now() THEN w.previous_secret END AS previous_secret,
                      e.position, e.id, e.type, e.payload::text AS payload, e."timestamp", e.project_id,
                      e.tenant_id, e.user_id, e.metadata::text AS metadata
               FROM due
               JOIN event_bus_webhook_endpoints w ON w.id = due.endpoint_id
               JOIN (SELECT position, id, type, payload, "timestamp", project_id, tenant_id, user_id, metadata
                       FROM event_bus_events
                     UNION ALL
                     SELECT position, id, type, payload, "timestamp", project_id, tenant_id, user_id, metadata
                       FROM event_bus_events_archive) e ON e.position = due.event_position
               ORDER BY due.delivery_id"#,
        )
        .bind(limit as i64)
        .bind(millis(lease))
        .bind(skip)
        .fetch_all(self.pooled())
        .await
        .map_err(|e| unavailable("claiming webhook deliveries", e))?;
        let fail = |e| unavailable("reading claimed webhook deliveries", e);
        rows.iter()
            .map(|row| {
                let id: i64 = row.try_get("delivery_id").map_err(fail)?;
                let attempts: i32 = row.try_get("attempts").map_err(fail)?;
                let secret: String = row.try_get("secret").map_err(fail)?;
                let previous: Option<String> = row.try_get("previous_secret").map_err(fail)?;
                Ok(DueDelivery {
                    id: id as u64,
                    attempts: attempts.max(0) as u32,
                    endpoint_id: row.try_get("endpoint_id").map_err(fail)?,
                    url: row.try_get("url").map_err(fail)?,
                    secrets: std::iter::once(secret).chain(previous).collect(),
                    event: row_event(row)?,
                })
            })
            .collect()
    }

    async fn record(&self, outcomes: &[Outcome], disable_after: u32) -> Result<Vec<Disabled>> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let fail = |e| unavailable("recording webhook attempts", e);
        let mut ids = Vec::with_capacity(outcomes.len());
        let mut numbers = Vec::with_capacity(outcomes.len());
        let mut ats = Vec::with_capacity(outcomes.len());
        let mut codes: Vec<Option<i32>> = Vec::with_capacity(outcomes.len());
        let mut errors = Vec::with_capacity(outcomes.len());
        let mut latencies = Vec::with_capacity(outcomes.len());
        let mut bodies = Vec::with_capacity(outcomes.len());
        let mut statuses = Vec::with_capacity(outcomes.len());
        let mut nexts: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            ids.push(o.delivery_id as i64);
            numbers.push(o.attempt.attempt as i32);
            ats.push(o.attempt.at);
            codes.push(o.attempt.status_code.map(i32::from));
            errors.push(o.attempt.error.clone());
            latencies.push(o.attempt.latency_ms.min(i32::MAX as u32) as i32);
            bodies.push(o.attempt.response_body.clone());
            let (status, next) = match o.next {
                Next::Delivered => ("delivered", None),
                Next::RetryAt(at) => ("retrying", Some(at)),
                Next::Dead | Next::Gone => ("dead", None),
            };
            statuses.push(status);
            nexts.push(next);
        }
        let mut tx = self.pooled().begin().await.map_err(fail)?;
        // Before any delivery row lock: a removal holds the endpoints table lock and then waits
        // for delivery rows (its cascade), so taking them first and the table after deadlocks.
        sqlx::query("LOCK TABLE event_bus_webhook_endpoints IN ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        // A delivery removed meanwhile (with its endpoint) has nothing to record: skipped rather
        // than failing the whole batch on the foreign key.
        sqlx::query(
            "INSERT INTO event_bus_webhook_attempts
               (delivery_id, attempt, at, status_code, error, latency_ms, response_body)
             SELECT a.* FROM UNNEST($1::bigint[], $2::int[], $3::timestamptz[], $4::int[], $5::text[], $6::int[], $7::text[])
                  AS a(delivery_id, attempt, at, status_code, error, latency_ms, response_body)
             WHERE EXISTS (SELECT 1 FROM event_bus_webhook_deliveries d
                           WHERE d.id = a.delivery_id FOR KEY SHARE)
             ON CONFLICT DO NOTHING",
        )
        .bind(&ids)
        .bind(&numbers)
        .bind(&ats)
        .bind(&codes)
        .bind(&errors)
        .bind(&latencies)
        .bind(&bodies)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        sqlx::query(
            "UPDATE event_bus_webhook_deliveries d SET
               status = o.status, attempts = o.attempt, next_attempt_at = COALESCE(o.next, d.next_attempt_at),
               lease_until = NULL, last_status = o.code, last_error = o.error, updated_at = now()
             FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::timestamptz[], $5::int[], $6::text[])
                  AS o(id, attempt, status, next, code, error)
             WHERE d.id = o.id",
        )
        .bind(&ids)
        .bind(&numbers)
        .bind(&statuses)
        .bind(&nexts)
        .bind(&codes)
        .bind(&errors)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        let disabled = judge_endpoints(&mut tx, outcomes, disable_after)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(disabled)
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>> {
        let fail = |e| unavailable("listing webhook deliveries", e);
        // The event's id and type come from its row in the log or the archive (one statement, so
        // an event being archived is found in exactly one); the event id filter becomes
        // positions through the ids' unique indexes.
        let rows = sqlx::query(
            "SELECT d.id, d.endpoint_id, d.position, d.status, d.attempts, d.next_attempt_at,
                    d.last_status, d.last_error, d.created_at, d.updated_at,
                    COALESCE(e.id, a.id) AS event_id, COALESCE(e.type, a.type) AS event_type
             FROM event_bus_webhook_deliveries d
             LEFT JOIN event_bus_events e ON e.position = d.position
             LEFT JOIN event_bus_events_archive a ON a.position = d.position
             WHERE ($1::uuid IS NULL OR d.endpoint_id = $1) AND ($2::text IS NULL OR d.status = $2)
               AND ($4::uuid IS NULL OR d.position IN (
                     SELECT position FROM event_bus_events WHERE id = $4
                     UNION ALL
                     SELECT position FROM event_bus_events_archive WHERE id = $4))
             ORDER BY d.id DESC LIMIT $3",
        )
        .bind(query.endpoint_id)
        .bind(query.status.map(DeliveryStatus::as_str))
        .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
        .bind(query.event_id)
        .fetch_all(self.pooled())
        .await
        .map_err(fail)?;
        let mut deliveries = rows.iter().map(delivery_row).collect::<Result<Vec<_>>>()?;
        let ids: Vec<i64> = deliveries.iter().map(|d| d.id as i64).collect();
        let attempts = sqlx::query(
            "SELECT delivery_id, attempt, at, status_code, error, latency_ms, response_body
             FROM event_bus_webhook_attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
        )
        .bind(&ids)
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
        let done = sqlx::query(
            "UPDATE event_bus_webhook_deliveries
             SET status = 'pending', next_attempt_at = now(), lease_until = NULL, updated_at = now()
             WHERE id = $1",
        )
        .bind(delivery_id as i64)
        .execute(self.pooled())
        .await
        .map_err(|e| unavailable("replaying a webhook delivery", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn replay_failed(&self, endpoint_id: Uuid, since: Option<DateTime<Utc>>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE event_bus_webhook_deliveries
             SET status = 'pending', next_attempt_at = now(), lease_until = NULL, updated_at = now()
             WHERE endpoint_id = $1 AND status = 'dead' AND ($2::timestamptz IS NULL OR created_at >= $2)",
        )
        .bind(endpoint_id)
        .bind(since)
        .execute(self.pooled())
        .await
        .map_err(|e| unavailable("replaying failed webhook deliveries", e))?;
        Ok(done.rows_affected())
    }
}
