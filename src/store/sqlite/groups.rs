//! Consumer-group state on SQLite (migrations/sqlite/0002_consumer_groups.sql). Leases are Unix
//! milliseconds from this process's clock; processes sharing the file share the machine's clock.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{now_ms, time, until, SqliteStore};
use crate::error::{EventBusError, Result};
use crate::event::{format_timestamp, SharedEvent};
use crate::store::group_bell::GroupBell;
use crate::store::groups::{plan_claim, DeadLetter, DeadLetterStatus, GroupStore, Lease};
use crate::store::unavailable;

fn lease_rows(rows: &[SqliteRow]) -> Result<Vec<Lease>> {
    let fail = |e| unavailable("reading group partitions", e);
    let mut leases = rows
        .iter()
        .map(|row| {
            let partition: i64 = row.try_get("partition").map_err(fail)?;
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

fn dead_letter_row(row: &SqliteRow) -> Result<DeadLetter> {
    let fail = |e| unavailable("reading dead letters", e);
    let id: i64 = row.try_get("id").map_err(fail)?;
    let position: i64 = row.try_get("position").map_err(fail)?;
    let attempts: i64 = row.try_get("attempts").map_err(fail)?;
    let status: String = row.try_get("status").map_err(fail)?;
    let created: String = row.try_get("created_at").map_err(fail)?;
    let updated: String = row.try_get("updated_at").map_err(fail)?;
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
        created_at: time(&created)?,
        updated_at: time(&updated)?,
    })
}

const DEAD_LETTER_COLUMNS: &str =
    "id, group_name, position, event, attempts, error, status, created_at, updated_at";

#[async_trait]
impl GroupStore for SqliteStore {
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
        let mut tx = self
            .pooled()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(fail)?;
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM event_bus_group_partitions WHERE group_name = ?",
        )
        .bind(group)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
        if count > 0 {
            return Ok(count as u32);
        }
        for p in 0..partitions {
            sqlx::query(
                "INSERT INTO event_bus_group_partitions (group_name, partition, checkpoint) VALUES (?, ?, ?)",
            )
            .bind(group)
            .bind(i64::from(p))
            .bind(start as i64)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        Ok(partitions)
    }

    async fn claim(
        &self,
        group: &str,
        member: &str,
        lease: Duration,
        keep: &[u32],
    ) -> Result<Vec<Lease>> {
        let fail = |e| unavailable("claiming group partitions", e);
        let mut tx = self
            .pooled()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(fail)?;
        let now = now_ms();
        let until = until(lease);
        sqlx::query(
            "INSERT INTO event_bus_group_members (group_name, member, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (group_name, member) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(group)
        .bind(member)
        .bind(until)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        sqlx::query("DELETE FROM event_bus_group_members WHERE group_name = ? AND expires_at < ?")
            .bind(group)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let (members, partitions): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM event_bus_group_members WHERE group_name = ?1),
                    (SELECT count(*) FROM event_bus_group_partitions WHERE group_name = ?1)",
        )
        .bind(group)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
        let held = sqlx::query(
            "SELECT partition, checkpoint FROM event_bus_group_partitions
             WHERE group_name = ?1 AND owner = ?2 AND lease_until > ?3 ORDER BY partition",
        )
        .bind(group)
        .bind(member)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(fail)?;
        let plan = plan_claim(lease_rows(&held)?, partitions as u32, members as u32, keep);
        // One statement renews what it keeps and releases the rest it owns: what it gives back,
        // and its leases that already expired.
        let kept: Vec<u32> = plan.kept.iter().map(|l| l.partition).collect();
        let kept = serde_json::to_string(&kept).map_err(|e| {
            EventBusError::StoreUnavailable(format!("encoding group partitions: {e}"))
        })?;
        sqlx::query(
            "UPDATE event_bus_group_partitions
             SET owner = CASE WHEN partition IN (SELECT value FROM json_each(?3)) THEN owner END,
                 lease_until = CASE WHEN partition IN (SELECT value FROM json_each(?3)) THEN ?4 END
             WHERE group_name = ?1 AND owner = ?2",
        )
        .bind(group)
        .bind(member)
        .bind(kept)
        .bind(until)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        let mut taken = Vec::new();
        if plan.take > 0 {
            let rows = sqlx::query(
                "UPDATE event_bus_group_partitions SET owner = ?2, lease_until = ?3
                 WHERE group_name = ?1 AND partition IN (
                   SELECT partition FROM event_bus_group_partitions
                   WHERE group_name = ?1 AND (owner IS NULL OR lease_until <= ?4)
                   ORDER BY partition LIMIT ?5)
                 RETURNING partition, checkpoint",
            )
            .bind(group)
            .bind(member)
            .bind(until)
            .bind(now)
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
        let fail = |e| unavailable("committing group checkpoints", e);
        let mut tx = self
            .pooled()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(fail)?;
        let now = now_ms();
        let mut lost = Vec::new();
        for lease in checkpoints {
            let done = sqlx::query(
                "UPDATE event_bus_group_partitions SET checkpoint = max(checkpoint, ?4)
                 WHERE group_name = ?1 AND partition = ?2 AND owner = ?3 AND lease_until > ?5",
            )
            .bind(group)
            .bind(i64::from(lease.partition))
            .bind(member)
            .bind(lease.checkpoint as i64)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
            if done.rows_affected() == 0 {
                lost.push(lease.partition);
            }
        }
        tx.commit().await.map_err(fail)?;
        Ok(lost)
    }

    async fn leave(&self, group: &str, member: &str) -> Result<()> {
        let fail = |e| unavailable("leaving the consumer group", e);
        let mut tx = self
            .pooled()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(fail)?;
        sqlx::query("DELETE FROM event_bus_group_members WHERE group_name = ? AND member = ?")
            .bind(group)
            .bind(member)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        sqlx::query(
            "UPDATE event_bus_group_partitions SET owner = NULL, lease_until = NULL
             WHERE group_name = ? AND owner = ?",
        )
        .bind(group)
        .bind(member)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(())
    }

    fn bell(&self) -> &GroupBell {
        &self.bell
    }

    async fn add_dead_letter(
        &self,
        group: &str,
        event: &SharedEvent,
        attempts: u32,
        error: &str,
    ) -> Result<u64> {
        let now = format_timestamp(&Utc::now());
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO event_bus_dead_letters
               (group_name, position, event, attempts, error, status, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'dead', ?6, ?6) RETURNING id",
        )
        .bind(group)
        .bind(event.position as i64)
        .bind(event.json())
        .bind(i64::from(attempts))
        .bind(error)
        .bind(now)
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
             WHERE (?1 IS NULL OR group_name = ?1) AND (?2 IS NULL OR status = ?2)
             ORDER BY id DESC LIMIT ?3"
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
        let done = sqlx::query(
            "UPDATE event_bus_dead_letters
             SET status = CASE WHEN status = 'resolved' THEN status ELSE 'retrying' END,
                 owner = NULL, lease_until = NULL, updated_at = ?2
             WHERE id = ?1",
        )
        .bind(id as i64)
        .bind(format_timestamp(&Utc::now()))
        .execute(self.pooled())
        .await
        .map_err(|e| unavailable("retrying a dead letter", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn claim_retries(
        &self,
        group: &str,
        member: &str,
        lease: Duration,
    ) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE event_bus_dead_letters SET owner = ?2, lease_until = ?3
             WHERE id IN (SELECT id FROM event_bus_dead_letters
                          WHERE group_name = ?1 AND status = 'retrying'
                            AND (owner IS NULL OR lease_until <= ?4)
                          ORDER BY id LIMIT 100)
             RETURNING {DEAD_LETTER_COLUMNS}"
        )))
        .bind(group)
        .bind(member)
        .bind(until(lease))
        .bind(now_ms())
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
             SET status = CASE WHEN ?2 THEN 'resolved' ELSE 'dead' END,
                 attempts = attempts + ?3,
                 error = CASE WHEN ?2 THEN error ELSE ?4 END,
                 owner = NULL, lease_until = NULL, updated_at = ?5
             WHERE id = ?1",
        )
        .bind(id as i64)
        .bind(delivered)
        .bind(i64::from(attempts))
        .bind(error)
        .bind(format_timestamp(&Utc::now()))
        .execute(self.pooled())
        .await
        .map_err(|e| unavailable("settling a dead-letter retry", e))?;
        Ok(())
    }
}
