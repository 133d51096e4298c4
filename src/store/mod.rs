//! The durable log. Every backend assigns increasing positions in commit order (so a reader that
//! asks for `position > last` never misses a late commit) and enforces idempotency by event id.

pub mod group_bell;
pub mod groups;
pub mod memory;
mod migrate;
pub mod postgres;
mod postgres_groups;
mod postgres_webhooks;
mod sql;
pub mod sqlite;
mod sqlite_groups;
mod sqlite_webhooks;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{EventBusError, Result};
use crate::event::{Event, SharedEvent};
use crate::query::Query;
use groups::GroupStore;
use webhooks::WebhookStore;

/// Rows moved or deleted per statement by archiving and retention: small enough that no
/// statement holds locks for long.
pub const ARCHIVE_BATCH: usize = 1000;

/// One event of an append request, as the store answered it.
#[derive(Debug, Clone)]
pub struct Appended {
    pub event: SharedEvent,
    /// False when the id already existed with the same content: the stored event is returned and
    /// nothing is delivered again.
    pub fresh: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    pub pool_size: u32,
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            pool_size: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends several independent requests in one go (group commit). Each request is atomic on
    /// its own: it is stored whole or fails whole, without affecting the others.
    async fn append(&self, requests: Vec<Vec<Event>>) -> Vec<Result<Vec<Appended>>>;

    /// Whether a commit costs about the same whatever its size (a round trip, an fsync), so that
    /// holding one briefly for publishes on their way pays. Not for an in-memory log.
    fn fixed_commit_cost(&self) -> bool {
        true
    }

    /// Events matching the query, in its order, at most `query.limit + 1` of them.
    async fn query(&self, query: &Query) -> Result<Vec<SharedEvent>>;

    /// Moves up to `batch` events older than `older_than` (oldest first) to the archive; returns
    /// how many moved. Safe to run concurrently and to re-run after a crash.
    async fn archive_batch(&self, older_than: DateTime<Utc>, batch: usize) -> Result<u64>;

    /// Deletes up to `batch` archived events archived before `archived_before`.
    async fn purge_archive_batch(
        &self,
        archived_before: DateTime<Utc>,
        batch: usize,
    ) -> Result<u64>;

    /// Starts listening for commits by other instances, calling `wake` for each; stores without
    /// a notification channel return None and rely on the tailer's poll.
    fn doorbell(&self, _wake: Box<dyn Fn() + Send + Sync>) -> Option<tokio::task::JoinHandle<()>> {
        None
    }

    /// Consumer-group state kept beside this log.
    fn groups(&self) -> &dyn GroupStore;

    /// Webhook endpoints and the delivery outbox kept beside this log.
    fn webhooks(&self) -> &dyn WebhookStore;

    async fn close(&self) {}
}

/// Opens the store named by `store_url`: `memory:`, `sqlite://path` or `postgres://…`. Applies
/// migrations for the durable ones.
pub async fn open(store_url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>> {
    if store_url == "memory:" {
        return Ok(Arc::new(memory::MemoryStore::default()));
    }
    if store_url.starts_with("postgres://") || store_url.starts_with("postgresql://") {
        return Ok(Arc::new(
            postgres::PostgresStore::open(store_url, options).await?,
        ));
    }
    if store_url.starts_with("sqlite:") {
        return Ok(Arc::new(
            sqlite::SqliteStore::open(store_url, options).await?,
        ));
    }
    Err(EventBusError::InvalidConfig(format!(
        "storeUrl {store_url:?} is not supported (use postgres://…, sqlite://path or memory:)"
    )))
}

pub(crate) fn duplicate_error(id: &uuid::Uuid) -> EventBusError {
    EventBusError::DuplicateEvent(format!("id {id} already exists with different content"))
}

/// The answer for an event whose id is already stored: the stored event when the content is the
/// same (an idempotent retry), DUPLICATE_EVENT otherwise.
pub(crate) fn existing(event: &Event, stored: &SharedEvent, index: usize) -> Result<Appended> {
    if stored.event.same_content(event) {
        Ok(Appended {
            event: stored.clone(),
            fresh: false,
        })
    } else {
        Err(duplicate_error(&event.id).at(&format!("events[{index}]")))
    }
}

/// Database failures a caller can retry later (connection lost, pool exhausted, server down).
pub(crate) fn unavailable(context: &str, err: sqlx::Error) -> EventBusError {
    tracing::warn!(error = %err, "{context} failed");
    EventBusError::StoreUnavailable(format!("{context} failed: {err}"))
}
