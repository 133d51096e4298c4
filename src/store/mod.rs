//! The durable log. Every backend assigns increasing positions in commit order (so a reader that
//! asks for `position > last` never misses a late commit) and enforces idempotency by event id.

mod db_error;
pub mod group_bell;
pub mod groups;
pub(crate) mod memory;
mod migrate;
pub(crate) mod pool;
pub mod postgres;
mod sql;
pub(crate) mod sqlite;
mod time;
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
pub(crate) const ARCHIVE_BATCH: usize = 1000;

/// A store's connection pool: connections in use and idle now, and the acquires so far that
/// found no idle connection in a full pool (they waited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections handed out.
    pub in_use: u64,
    /// Connections open and free.
    pub idle: u64,
    /// Acquires that had to wait.
    pub waits: u64,
}

/// One event of an append request, as the store answered it.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The event as stored, with its position.
    pub event: SharedEvent,
    /// False when the id already existed with the same content: the stored event is returned and
    /// nothing is delivered again.
    pub fresh: bool,
}

/// How a durable store connects (`store` options); the memory store ignores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Connections in the pool at most.
    pub pool_size: u32,
    /// How long to wait for a connection (in SQLite also for the write lock) before failing with
    /// STORE_UNAVAILABLE.
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

/// A backend of the log (memory, SQLite, PostgreSQL), with the group and webhook state kept
/// beside it.
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

    /// The position of the newest event in the log (0 when it is empty): where a reader that
    /// wants only what comes next starts.
    async fn head_position(&self) -> Result<u64> {
        let newest = Query {
            limit: 1,
            order: crate::query::Order::Desc,
            ..Query::default()
        };
        Ok(self.query(&newest).await?.first().map_or(0, |e| e.position))
    }

    /// Starts listening for commits by other instances, calling `wake` for each; stores without
    /// a notification channel return None and rely on the tailer's poll.
    fn doorbell(&self, _wake: Box<dyn Fn() + Send + Sync>) -> Option<tokio::task::JoinHandle<()>> {
        None
    }

    /// Since when the notification connection (LISTEN) has been down, if it is; None while it
    /// is up or for stores without one.
    fn listener_down_since(&self) -> Option<std::time::Instant> {
        None
    }

    /// Its connection pool's figures (None for memory).
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }

    /// Consumer-group state kept beside this log.
    fn groups(&self) -> &dyn GroupStore;

    /// Webhook endpoints and the delivery outbox kept beside this log.
    fn webhooks(&self) -> &dyn WebhookStore;

    /// Closes its connections; the last step of `EventBus::close`.
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
        "storeUrl \"{}\" is not supported (use postgres://…, sqlite://path or memory:)",
        redact_url(store_url)
    )))
}

/// `url` with any password replaced by `***`, for messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.password().is_some() && parsed.set_password(Some("***")).is_ok() {
            return parsed.to_string();
        }
        // A URL with an authority and no password shows nothing secret.
        if !parsed.cannot_be_a_base() {
            return url.to_string();
        }
    }
    // Not a URL we can read (a typo such as `postgres//u:pw@h`): what follows the first `:` of
    // the credentials (from the last `//` before the `@`, or the start) up to the `@` may be a
    // password; the rest stays, so the typo can still be seen.
    let Some(at) = url.rfind('@') else {
        return url.to_string();
    };
    let from = url[..at].rfind("//").map_or(0, |i| i + 2);
    match url[from..at].find(':') {
        Some(colon) => format!("{}***{}", &url[..from + colon + 1], &url[at..]),
        None => url.to_string(),
    }
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
    let cause = db_error::describe(&err);
    tracing::warn!(error = %cause, "{context} failed");
    EventBusError::StoreUnavailable(format!("{context} failed: {cause}"))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/events"),
            "postgres://app:***@db:5432/events"
        );
        assert_eq!(
            redact_url("postgres://app@db/events"),
            "postgres://app@db/events"
        );
        assert_eq!(redact_url("memory:"), "memory:");
        assert!(!redact_url("mysql://u:s3cret@[bad/x").contains("s3cret"));
        // Typos that are no URL, or not the URL they look like, still hide the password.
        assert_eq!(
            redact_url("postgres//u:s3cret@db/x"),
            "postgres//u:***@db/x"
        );
        assert_eq!(redact_url("postgres//u:pa/ss@db"), "postgres//u:***@db");
        assert_eq!(redact_url("postgres:u:s3cret@db"), "postgres:***@db");
        assert_eq!(
            redact_url("sqlite://./event-bus.db"),
            "sqlite://./event-bus.db"
        );
    }
}
