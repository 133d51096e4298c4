//! Consumer-group state on PostgreSQL (migrations/postgres/0003_consumer_groups.sql). Leases use
//! the database clock, so members in different processes agree on expiry.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PostgresStore;
use crate::error::{EventBusError, Result};
use crate::event::SharedEvent;
use crate::store::group_bell::{GroupBell, Rebalance};
use crate::store::groups::{plan_claim, DeadLetter, DeadLetterStatus, GroupStore, Lease};
use crate::store::time::millis;
use crate::store::unavailable;

fn lease_rows(rows: &[PgRow]) -> Result<Vec<Lease>> {
    let fail = |e| unavailable("reading group partitions", e);
    let mut leases = rows
        .iter()
        .map(|row| {
            let partition: i32 = row.try_get("partition").map_err(fail)?;
            let checkpoint: i64 = row.try_get("checkpoint").map_err(fail)?;
            Ok(Lease {
                partition: partition as u32,
                checkpoint: checkpoint as u64,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    leases.sort_by_key(|l| l.partition);
    Ok(leases)
}

fn dead_letter_row(row: &PgRow) -> Result<DeadLetter> {
    let fail = |e| unavailable("reading dead letters", e);
    let id: i64 = row.try_get("id").map_err(fail)?;
    let position: i64 = row.try_get("position").map_err(fail)?;
    let attempts: i32 = row.try_get("attempts").map_err(fail)?;
    let status: String = row.try_get("status").map_err(fail)?;
    Ok(DeadLetter {
        id: id as u64,
        group: row.try_get("group_name").map_err(fail)?,
        position: position as u64,
        event_json: row.try_get("event").map_err(fail)?,
        attempts: attempts as u32,
        error: row.try_get("error").map_err(fail)?,
        status: DeadLetterStatus::parse(&status).ok_or_else(|| {
            EventBusError::StoreUnavailable(format!("unknown dead-letter status {status:?}"))
        })?,
        created_at: row.try_get("created_at").map_err(fail)?,
        updated_at: row.try_get("updated_at").map_err(fail)?,
    })
}

const DEAD_LETTER_COLUMNS: &str =
    "id, group_name, position, event, attempts, error, status, created_at, updated_at";

#[async_trait]
impl GroupStore for PostgresStore {
    async fn lowest_checkpoints(&self) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT group_name, min(checkpoint) FROM event_bus_group_partitions
             GROUP BY group_name ORDER BY group_name",
        )
        .fetch_all(self.pooled())
        .await
        .map_err(|e| unavailable("reading group checkpoints", e))?;
        Ok(rows
            .into_iter()
            .map(|(group, low)| (group, low.max(0) as u64))
            .collect())
    }

    async fn ensure_group(&self, group: &str, partitions: u32, start: u64) -> Result<u32> {
        let fail = |e| unavailable("creating the consumer group", e);
        sqlx::query(
            "INSERT INTO event_bus_group_partitions (group_name, partition, checkpoint)
             SELECT $1, p, $3 FROM generate_series(0, $2 - 1) AS p
             WHERE NOT EXISTS (SELECT 1 FROM event_bus_group_partitions WHERE group_name = $1)
             ON CONFLICT DO NOTHING",
        )
        .bind(group)
        .bind(partitions as i32)
        .bind(start as i64)
        .execute(self.pooled())
        .await
        .map_err(fail)?;
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM event_bus_group_partitions WHERE group_name = $1",
        )
        .bind(group)
        .fetch_one(self.pooled())
        .await
        .map_err(fail)?;
        Ok(count as u32)
    }

    async fn claim(
        &self,
        group: &str,
        member: &str,
        lease: Duration,
        keep: &[u32],
    ) -> Result<Vec<Lease>> {
        let fail = |e| unavailable("claiming group partitions", e);
        let mut tx = self.pooled().begin().await.map_err(fail)?;
        let lease_ms = millis(lease);
        sqlx::query(
            "INSERT INTO event_bus_group_members (group_name, member, expires_at)
             VALUES ($1, $2, now() + $3 * interval '1 millisecond')
             ON CONFLICT (group_name, member) DO UPDATE SET expires_at = EXCLUDED.expires_at",
        )
        .bind(group)
        .bind(member)
        .bind(lease_ms)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        sqlx::query(
            "DELETE FROM event_bus_group_members WHERE group_name = $1 AND expires_at < now()",
        )
        .bind(group)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        let (members, partitions): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM event_bus_group_members WHERE group_name = $1),
                    (SELECT count(*) FROM event_bus_group_partitions WHERE group_name = $1)",
        )
        .bind(group)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
        // Renew everything it holds and read it in one statement; what exceeds its share is given
        // back next.
        let held = sqlx::query(
            "UPDATE event_bus_group_partitions SET lease_until = now() + $3 * interval '1 millisecond'
             WHERE group_name = $1 AND owner = $2 AND lease_until > now()
             RETURNING partition, checkpoint",
        )
        .bind(group)
        .bind(member)
        .bind(lease_ms)
        .fetch_all(&mut *tx)
        .await
        .map_err(fail)?;
        let plan = plan_claim(lease_rows(&held)?, partitions as u32, members as u32, keep);
        if !plan.give_back.is_empty() {
            let give_back: Vec<i32> = plan.give_back.iter().map(|&p| p as i32).collect();
            sqlx::query(
                "UPDATE event_bus_group_partitions SET owner = NULL, lease_until = NULL, updated_at = now()
                 WHERE group_name = $1 AND owner = $2 AND partition = ANY($3)",
            )
            .bind(group)
            .bind(member)
            .bind(&give_back)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        }
        let mut taken = Vec::new();
        if plan.take > 0 {
            let rows = sqlx::query(
                "UPDATE event_bus_group_partitions p
                 SET owner = $2, lease_until = now() + $3 * interval '1 millisecond', updated_at = now()
                 FROM (SELECT partition FROM event_bus_group_partitions
                       WHERE group_name = $1 AND (owner IS NULL OR lease_until <= now())
                       ORDER BY partition LIMIT $4 FOR UPDATE SKIP LOCKED) AS free
                 WHERE p.group_name = $1 AND p.partition = free.partition
                 RETURNING p.partition, p.checkpoint",
            )
            .bind(group)
            .bind(member)
            .bind(lease_ms)
            .bind(i64::try_from(plan.take).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(fail)?;
            taken = lease_rows(&rows)?;
        }
        tx.commit().await.map_err(fail)?;
        Ok(plan.held(taken))
    }

    async fn commit(&self, group: &str, member: &str, checkpoints: &[Lease]) -> Result<Vec<u32>> {
        let partitions: Vec<i32> = checkpoints.iter().map(|l| l.partition as i32).collect();
        let positions: Vec<i64> = checkpoints.iter().map(|l| l.checkpoint as i64).collect();
        let held: Vec<i32> = sqlx::query_scalar(
            "UPDATE event_bus_group_partitions p
             SET checkpoint = GREATEST(p.checkpoint, c.checkpoint), updated_at = now()
             FROM UNNEST($3::int[], $4::bigint[]) AS c(partition, checkpoint)
             WHERE p.group_name = $1 AND p.partition = c.partition AND p.owner = $2
               AND p.lease_until > now()
             RETURNING p.partition",
        )
        .bind(group)
        .bind(member)
        .bind(&partitions)
        .bind(&positions)
        .fetch_all(self.pooled())
        .await
        .map_err(|e| unavailable("committing group checkpoints", e))?;
        Ok(partitions
            .into_iter()
            .filter(|p| !held.contains(p))
            .map(|p| p as u32)
            .collect())
    }

    async fn leave(&self, group: &str, member: &str) -> Result<()> {
        let fail = |e| unavailable("leaving the consumer group", e);
        sqlx::query(
            "WITH gone AS (DELETE FROM event_bus_group_members WHERE group_name = $1 AND member = $2)
             UPDATE event_bus_group_partitions SET owner = NULL, lease_until = NULL, updated_at = now()
             WHERE group_name = $1 AND owner = $2",
        )
        .bind(group)
        .bind(member)
        .execute(self.pooled())
        .await
        .map_err(fail)?;
        Ok(())
    }

    fn bell(&self) -> &GroupBell {
        &self.bell
    }

    /// Rings this instance's members, and the other instances' over NOTIFY (after the claim that
    /// changed things has committed, so what they read is current).
    async fn ring(&self, group: &str, from: &Arc<Rebalance>) -> Result<()> {
        self.bell.ring(group, Some(from));
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.channel)
            .bind(self.group_ring_payload(group))
            .execute(self.pooled())
            .await
            .map_err(|e| unavailable("ringing the consumer group", e))?;
        Ok(())
    }

    async fn add_dead_letter(
        &self,
        group: &str,
        event: &SharedEvent,
        attempts: u32,
        error: &str,
    ) -> Result<u64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO event_bus_dead_letters (group_name, position, event, attempts, error, status)
             VALUES ($1, $2, $3, $4, $5, 'dead') RETURNING id",
        )
        .bind(group)
        .bind(event.position as i64)
        .bind(event.json())
        .bind(attempts as i32)
        .bind(error)
        .fetch_one(self.pooled())
        .await
        .map_err(|e| unavailable("recording a dead letter", e))?;
        Ok(id as u64)
    }

    async fn dead_letters(
        &self,
        group: Option<&str>,
        status: Option<DeadLetterStatus>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM event_bus_dead_letters
             WHERE ($1::text IS NULL OR group_name = $1) AND ($2::text IS NULL OR status = $2)
             ORDER BY id DESC LIMIT $3"
        )))
        .bind(group)
        .bind(status.map(DeadLetterStatus::as_str))
        .bind(limit as i64)
        .fetch_all(self.pooled())
        .await
        .map_err(|e| unavailable("reading dead letters", e))?;
        rows.iter().map(dead_letter_row).collect()
    }

    async fn retry_dead_letter(&self, id: u64) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "UPDATE event_bus_dead_letters
             SET status = CASE WHEN status = 'resolved' THEN status ELSE 'retrying' END,
                 owner = NULL, lease_until = NULL, updated_at = now()
             WHERE id = $1 RETURNING id",
        )
        .bind(id as i64)
        .fetch_optional(self.pooled())
        .await
        .map_err(|e| unavailable("retrying a dead letter", e))?;
        Ok(found.is_some())
    }

    async fn claim_retries(
        &self,
        group: &str,
        member: &str,
        lease: Duration,
    ) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE event_bus_dead_letters d
             SET owner = $2, lease_until = now() + $3 * interval '1 millisecond'
             FROM (SELECT id FROM event_bus_dead_letters
                   WHERE group_name = $1 AND status = 'retrying'
                     AND (owner IS NULL OR lease_until <= now())
                   ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED) AS due
             WHERE d.id = due.id
             RETURNING {}",
            DEAD_LETTER_COLUMNS
                .split(", ")
                .map(|c| format!("d.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .bind(group)
        .bind(member)
        .bind(millis(lease))
        .fetch_all(self.pooled())
        .await
        .map_err(|e| unavailable("claiming dead letters to retry", e))?;
        let mut letters = rows
            .iter()
            .map(dead_letter_row)
            .collect::<Result<Vec<_>>>()?;
        letters.sort_by_key(|d| d.id);
        Ok(letters)
    }

    async fn settle_retry(
        &self,
        id: u64,
        delivered: bool,
        attempts: u32,
        error: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE event_bus_dead_letters
             SET status = CASE WHEN $2 THEN 'resolved' ELSE 'dead' END,
                 attempts = attempts + $3,
                 error = CASE WHEN $2 THEN error ELSE $4 END,
                 owner = NULL, lease_until = NULL, updated_at = now()
             WHERE id = $1",
        )
        .bind(id as i64)
        .bind(delivered)
        .bind(attempts as i32)
        .bind(error)
        .execute(self.pooled())
        .await
        .map_err(|e| unavailable("settling a dead-letter retry", e))?;
        Ok(())
    }
}
