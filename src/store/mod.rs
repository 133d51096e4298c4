//! The durable log. Every backend assigns gap-free, increasing positions in commit order and
//! enforces idempotency by event id.

pub mod memory;

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{EventBusError, Result};
use crate::event::{Event, SharedEvent};
use crate::query::Query;

/// One event of an append request, as the store answered it.
#[derive(Debug, Clone)]
pub struct Appended {
    pub event: SharedEvent,
    /// False when the id already existed with the same content: the stored event is returned and
    /// nothing is delivered again.
    pub fresh: bool,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends several independent requests in one go (group commit). Each request is atomic on
    /// its own: it is stored whole or fails whole, without affecting the others.
    async fn append(&self, requests: Vec<Vec<Event>>) -> Vec<Result<Vec<Appended>>>;

    /// Events matching the query, in its order, at most `query.limit + 1` of them.
    async fn query(&self, query: &Query) -> Result<Vec<SharedEvent>>;

    async fn close(&self) {}
}

pub fn open(store_url: &str) -> Result<Arc<dyn Store>> {
    if store_url == "memory:" {
        return Ok(Arc::new(memory::MemoryStore::default()));
    }
    Err(EventBusError::InvalidConfig(format!(
        "storeUrl {store_url:?} is not supported by this build (supported: \"memory:\")"
    )))
}

pub(crate) fn duplicate_error(id: &uuid::Uuid) -> EventBusError {
    EventBusError::DuplicateEvent(format!("id {id} already exists with different content"))
}
