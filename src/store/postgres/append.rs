//! Group commits on the writer connection: one multi-row statement when the bus generated every
//! id, `event_bus_append` when callers chose ids, and a transaction that compares content when an
//! id already exists or repeats (see the module docs of `postgres`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{ConnectOptions, Postgres, Row};
use tokio::time::Instant;
use uuid::Uuid;

use super::connect::address;
use super::{row_event, PostgresStore, APPEND_LOCK, COLUMNS};
use crate::error::{EventBusError, Result};
use crate::event::{Event, SharedEvent, StoredEvent};
use crate::store::db_error;
use crate::store::{existing, unavailable, Appended};

/// Least time one append statement may take before the publish fails (it may wait on the append
/// lock behind another instance's commit).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// A batch of events as column arrays, bound as PostgreSQL arrays and unnested server-side.
struct EventColumns<'a> {
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    payloads: Vec<&'a str>,
    stamps: Vec<DateTime<Utc>>,
    projects: Vec<Option<&'a str>>,
    tenants: Vec<Option<&'a str>>,
    users: Vec<Option<&'a str>>,
    metas: Vec<Option<&'a str>>,
}

impl<'a> EventColumns<'a> {
    fn of(events: impl Iterator<Item = &'a Event>) -> EventColumns<'a> {
        let mut c = EventColumns {
            ids: Vec::new(),
            types: Vec::new(),
            payloads: Vec::new(),
            stamps: Vec::new(),
            projects: Vec::new(),
            tenants: Vec::new(),
            users: Vec::new(),
            metas: Vec::new(),
        };
        for e in events {
            c.ids.push(e.id);
            c.types.push(e.event_type.as_str());
            c.payloads.push(e.payload.get());
            c.stamps.push(e.timestamp);
            c.projects.push(e.project_id.as_deref());
            c.tenants.push(e.tenant_id.as_deref());
            c.users.push(e.user_id.as_deref());
            c.metas.push(e.metadata.as_deref().map(RawValue::get));
        }
        c
    }
}

impl EventColumns<'_> {
    /// Binds the columns as $1…$8: uuid[], text[], text[], timestamptz[], text[] ×4.
    fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.ids)
            .bind(&self.types)
            .bind(&self.payloads)
            .bind(&self.stamps)
            .bind(&self.projects)
            .bind(&self.tenants)
            .bind(&self.users)
            .bind(&self.metas)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// `RETURNING id, position` rows as a map.
fn positions_by_id(rows: &[PgRow]) -> Result<HashMap<Uuid, u64>> {
    let fail = |e| unavailable("reading appended positions", e);
    rows.iter()
        .map(|row| {
            let id: Uuid = row.try_get("id").map_err(fail)?;
            let position: i64 = row.try_get("position").map_err(fail)?;
            Ok((id, position as u64))
        })
        .collect()
}

/// What one attempt at a group commit found.
enum Attempt {
    /// Committed: positions of the inserted ids, and the stored events of ids that existed.
    Committed {
        inserted: HashMap<Uuid, u64>,
        existing: HashMap<Uuid, SharedEvent>,
    },
    /// Rolled back because these requests reuse an id with different content.
    Refused(Vec<(usize, EventBusError)>),
}

impl PostgresStore {
    /// The writer connection, opened if needed within the acquire timeout.
    async fn writer_connection(
        &self,
        slot: &mut Option<PgConnection>,
        deadline: Instant,
    ) -> Result<()> {
        if slot.is_none() {
            let connecting = tokio::time::timeout_at(deadline, self.connect.connect()).await;
            let connection = match connecting {
                Ok(Ok(c)) => c,
                // After open every failure is an outage to retry: STORE_UNAVAILABLE.
                Ok(Err(e)) => {
                    let cause = db_error::describe(&e);
                    tracing::warn!(address = %address(&self.connect), error = %cause, "connecting to PostgreSQL failed");
                    return Err(EventBusError::StoreUnavailable(format!(
                        "cannot connect to PostgreSQL at {}: {cause}",
                        address(&self.connect)
                    )));
                }
                Err(_) => {
                    return Err(EventBusError::StoreUnavailable(format!(
                        "connecting to PostgreSQL timed out (store.acquireTimeoutMs = {})",
                        self.connect_timeout.as_millis()
                    )))
                }
            };
            *slot = Some(connection);
        }
        Ok(())
    }

    /// One group commit on the writer connection; a failed attempt drops the connection. The
    /// connection must be had by `deadline`; the statement gets at least [`COMMIT_TIMEOUT`], so a
    /// dead peer that never answers fails the publish instead of hanging it.
    async fn commit_on_writer(
        &self,
        requests: &[Vec<Event>],
        live: &[usize],
        generated: bool,
        retry: bool,
        deadline: Instant,
    ) -> Result<Attempt> {
        let mut slot = self.writer.lock().await;
        self.writer_connection(&mut slot, deadline).await?;
        let Some(conn) = slot.as_mut() else {
            return Err(EventBusError::StoreUnavailable(
                "no writer connection".into(),
            ));
        };
        let work = async {
            let doorbell = (self.channel.as_str(), self.token.as_str());
            if generated {
                Self::attempt_generated_ids(conn, requests, live, retry, doorbell).await
            } else {
                Self::attempt_caller_ids(conn, requests, live, doorbell).await
            }
        };
        let attempt =
            match tokio::time::timeout(COMMIT_TIMEOUT.max(self.connect_timeout), work).await {
                Ok(attempt) => attempt,
                Err(_) => Err(EventBusError::StoreUnavailable(
                    "PostgreSQL did not answer the append in time".into(),
                )),
            };
        if attempt.is_err() {
            *slot = None;
        }
        attempt
    }

    /// Group commit when every id was generated by the bus (the common case): no stored event can
    /// share an id, so there is nothing to refuse and the lock and the insert go in one
    /// autocommit statement, one round trip. The lock subquery is joined to every inserted row,
    /// so it is taken before any position is drawn and held until the statement commits.
    async fn attempt_generated_ids(
        conn: &mut PgConnection,
        requests: &[Vec<Event>],
        live: &[usize],
        retry: bool,
        (channel, token): (&str, &str),
    ) -> Result<Attempt> {
        let fail = |e| unavailable("appending events", e);
        let columns = EventColumns::of(live.iter().flat_map(|&r| requests[r].iter()));
        // A first attempt cannot conflict, and a plain insert is much cheaper than ON CONFLICT's
        // speculative insertion; a retry may find rows of its lost predecessor, so it skips them.
        macro_rules! insert_generated {
            ($on_conflict:literal) => {
                concat!(
                    r#"INSERT INTO event_bus_events (id, type, payload, "timestamp", project_id, tenant_id, user_id, metadata)
                       SELECT t.id, t.type, t.payload::jsonb, t.ts, t.project_id, t.tenant_id, t.user_id, t.metadata::jsonb
                       FROM (SELECT pg_advisory_xact_lock($9), pg_notify($10, $11)) AS append_lock,
                            UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[])
                            WITH ORDINALITY AS t(id, type, payload, ts, project_id, tenant_id, user_id, metadata, ord)
                       ORDER BY t.ord "#,
                    $on_conflict,
                    " RETURNING id, position"
                )
            };
        }
        let sql = if retry {
            insert_generated!("ON CONFLICT (id) DO NOTHING")
        } else {
            insert_generated!("")
        };
        let rows = columns
            .bind(sqlx::query(sql))
            .bind(APPEND_LOCK)
            .bind(channel)
            .bind(token)
            .fetch_all(&mut *conn)
            .await
            .map_err(fail)?;
        let mut inserted = positions_by_id(&rows)?;
        if inserted.len() != columns.ids.len() {
            // Already there: this batch committed on an earlier attempt whose reply was lost
            // (generated UUIDv7 ids are ours alone), so these rows are this batch's.
            let missing: Vec<Uuid> = columns
                .ids
                .iter()
                .filter(|id| !inserted.contains_key(id))
                .copied()
                .collect();
            let rows = sqlx::query("SELECT id, position FROM event_bus_events WHERE id = ANY($1)")
                .bind(&missing)
                .fetch_all(&mut *conn)
                .await
                .map_err(fail)?;
            inserted.extend(positions_by_id(&rows)?);
            if inserted.len() != columns.ids.len() {
                return Err(EventBusError::StoreUnavailable(
                    "appended events were not found".into(),
                ));
            }
        }
        Ok(Attempt::Committed {
            inserted,
            existing: HashMap::new(),
        })
    }

    /// Group commit when callers chose ids, in one round trip while none of them is stored yet or
    /// repeated in the batch (fresh ids, the normal case): `event_bus_append` takes the lock,
    /// inserts and rings in one autocommit statement, or inserts nothing and returns no rows.
    /// Then [`Self::attempt`] compares the content, as it always did.
    async fn attempt_caller_ids(
        conn: &mut PgConnection,
        requests: &[Vec<Event>],
        live: &[usize],
        (channel, token): (&str, &str),
    ) -> Result<Attempt> {
        let columns = EventColumns::of(live.iter().flat_map(|&r| requests[r].iter()));
        let called = columns
            .bind(sqlx::query(
                "SELECT appended_id AS id, appended_position AS position FROM event_bus_append(
                   $1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[],
                   $9, $10, $11)",
            ))
            .bind(APPEND_LOCK)
            .bind(channel)
            .bind(token)
            .fetch_all(&mut *conn)
            .await;
        let rows = match called {
            Ok(rows) => rows,
            // Stored meanwhile by a writer that skipped the append lock: nothing was inserted.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Vec::new(),
            Err(e) => return Err(unavailable("appending events", e)),
        };
        if rows.len() == columns.ids.len() {
            return Ok(Attempt::Committed {
                inserted: positions_by_id(&rows)?,
                existing: HashMap::new(),
            });
        }
        // The function inserts all rows or none; anything else is a bug worth failing loudly.
        if !rows.is_empty() {
            return Err(EventBusError::StoreUnavailable(format!(
                "event_bus_append stored {} of {} events",
                rows.len(),
                columns.ids.len()
            )));
        }
        tracing::debug!(
            events = columns.ids.len(),
            "an id is already stored or repeated; comparing content in a transaction"
        );
        Self::attempt(conn, requests, live, (channel, token)).await
    }

    /// Group commit when a caller's id is already stored or repeated in the batch: in a
    /// transaction, so a request that reuses an id with different content can be refused whole.
    async fn attempt(
        conn: &mut PgConnection,
        requests: &[Vec<Event>],
        live: &[usize],
        (channel, token): (&str, &str),
    ) -> Result<Attempt> {
        let fail = |e| unavailable("appending events", e);
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(fail)?;
        // The doorbell is delivered at commit, and only if the transaction commits.
        sqlx::query("SELECT pg_advisory_xact_lock($1), pg_notify($2, $3)")
            .bind(APPEND_LOCK)
            .bind(channel)
            .bind(token)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;

        let events = || live.iter().flat_map(|&r| requests[r].iter());
        let columns = EventColumns::of(events());
        let insert = columns.bind(sqlx::query(
            r#"INSERT INTO event_bus_events (id, type, payload, "timestamp", project_id, tenant_id, user_id, metadata)
               SELECT id, type, payload::jsonb, ts, project_id, tenant_id, user_id, metadata::jsonb
               FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[])
                    WITH ORDINALITY AS t(id, type, payload, ts, project_id, tenant_id, user_id, metadata, ord)
               ORDER BY ord
               ON CONFLICT (id) DO NOTHING
               RETURNING id, position"#,
        ));
        let rows = insert.fetch_all(&mut *tx).await.map_err(fail)?;
        let inserted = positions_by_id(&rows)?;

        // Ids that were not inserted already existed (before, or earlier in this batch).
        let mut first_in_batch: HashMap<Uuid, &Event> = HashMap::new();
        let mut missing = Vec::new();
        for e in events() {
            if inserted.contains_key(&e.id) {
                first_in_batch.entry(e.id).or_insert(e);
            } else {
                missing.push(e.id);
            }
        }
        let mut stored = HashMap::new();
        if !missing.is_empty() {
            let select = format!("SELECT {COLUMNS} FROM event_bus_events WHERE id = ANY($1)");
            let rows = sqlx::query(sqlx::AssertSqlSafe(select))
                .bind(&missing)
                .fetch_all(&mut *tx)
                .await
                .map_err(fail)?;
            for row in &rows {
                let event = row_event(row)?;
                stored.insert(event.event.id, event);
            }
        }
        let mut refused = Vec::new();
        for &r in live {
            let mut seen_here: HashMap<Uuid, &Event> = HashMap::new();
            for (i, e) in requests[r].iter().enumerate() {
                let same = match (
                    seen_here.get(&e.id),
                    first_in_batch.get(&e.id),
                    stored.get(&e.id),
                ) {
                    (Some(first), _, _) => first.same_content(e),
                    (None, Some(first), _) if !std::ptr::eq(*first, e) => first.same_content(e),
                    (None, Some(_), _) => true,
                    (None, None, Some(s)) => existing(e, s, i).is_ok(),
                    // Gone between insert and select: cannot happen inside the transaction.
                    (None, None, None) => false,
                };
                if !same {
                    refused.push((
                        r,
                        crate::store::duplicate_error(&e.id).at(&format!("events[{i}]")),
                    ));
                    break;
                }
                seen_here.entry(e.id).or_insert(e);
            }
        }
        if !refused.is_empty() {
            tx.rollback().await.map_err(fail)?;
            return Ok(Attempt::Refused(refused));
        }
        tx.commit().await.map_err(fail)?;
        Ok(Attempt::Committed {
            inserted,
            existing: stored,
        })
    }

    pub(super) async fn append_requests(
        &self,
        requests: Vec<Vec<Event>>,
    ) -> Vec<Result<Vec<Appended>>> {
        let mut results: Vec<Option<Result<Vec<Appended>>>> =
            requests.iter().map(|_| None).collect();
        let mut live: Vec<usize> = (0..requests.len()).collect();
        // Retries only drop refused requests, so this ends within requests.len() + 1 attempts.
        let outcome = loop {
            if live.is_empty() {
                break None;
            }
            let generated = live
                .iter()
                .all(|&r| requests[r].iter().all(|e| e.id_generated));
            let deadline = Instant::now() + self.connect_timeout;
            let mut attempt = self
                .commit_on_writer(&requests, &live, generated, false, deadline)
                .await;
            if generated && attempt.is_err() && Instant::now() < deadline {
                // Once more on a fresh connection (a restart leaves the old one dead); safe, since
                // rows committed by the failed attempt are recognised by their ids.
                attempt = self
                    .commit_on_writer(&requests, &live, generated, true, deadline)
                    .await;
            }
            match attempt {
                Ok(Attempt::Refused(refused)) => {
                    for (r, err) in refused {
                        live.retain(|&l| l != r);
                        results[r] = Some(Err(err));
                    }
                }
                Ok(Attempt::Committed { inserted, existing }) => {
                    break Some(Ok((inserted, existing)))
                }
                Err(e) => break Some(Err(e)),
            }
        };
        match outcome {
            None => {}
            Some(Err(e)) => {
                for &r in &live {
                    results[r] = Some(Err(e.clone()));
                }
            }
            Some(Ok((inserted, existing))) => {
                let mut claimed: HashMap<Uuid, SharedEvent> = HashMap::new();
                for (r, events) in requests.into_iter().enumerate() {
                    if results[r].is_some() {
                        continue;
                    }
                    let appended = events
                        .into_iter()
                        .map(|e| {
                            if let Some(stored) = claimed.get(&e.id).or_else(|| existing.get(&e.id))
                            {
                                return Appended {
                                    event: stored.clone(),
                                    fresh: false,
                                };
                            }
                            let position = inserted.get(&e.id).copied().unwrap_or_default();
                            let stored = Arc::new(StoredEvent::new(e, position));
                            claimed.insert(stored.event.id, stored.clone());
                            Appended {
                                event: stored,
                                fresh: true,
                            }
                        })
                        .collect();
                    results[r] = Some(Ok(appended));
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(EventBusError::StoreUnavailable(
                        "append was not attempted".into(),
                    ))
                })
            })
            .collect()
    }
}
