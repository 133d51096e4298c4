//! In-process store for tests and demos: the same contract as the durable backends.

mod groups;
mod webhooks;

pub use groups::MemoryGroups;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::event::{Event, SharedEvent, StoredEvent};
use crate::query::{Order, Query};
use crate::store::groups::GroupStore;
use crate::store::webhooks::WebhookStore;
use crate::store::{duplicate_error, existing, Appended, Store};
use webhooks::Webhooks;

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    groups: MemoryGroups,
}

#[derive(Default)]
struct State {
    /// Live events in position order (positions are dense until archiving removes a prefix).
    log: Vec<SharedEvent>,
    by_id: HashMap<Uuid, SharedEvent>,
    next_position: u64,
    /// Archived events with the time they were archived.
    archive: Vec<(SharedEvent, DateTime<Utc>)>,
    /// Webhook endpoints and the delivery outbox, under the same lock as the log so a delivery
    /// is written with its event, as the SQL triggers do.
    webhooks: Webhooks,
}

impl MemoryStore {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// The position of the event with this id, live or archived.
    fn position_of(&self, id: Uuid) -> Option<u64> {
        match self.by_id.get(&id) {
            Some(e) => Some(e.position),
            None => self
                .archive
                .iter()
                .find(|(e, _)| e.event.id == id)
                .map(|(e, _)| e.position),
        }
    }

    /// The event at `position`, live or archived.
    fn event_at(&self, position: u64) -> Option<SharedEvent> {
        match self.log.binary_search_by_key(&position, |e| e.position) {
            Ok(i) => Some(self.log[i].clone()),
            Err(_) => self
                .archive
                .iter()
                .find(|(e, _)| e.position == position)
                .map(|(e, _)| e.clone()),
        }
    }

    /// Checks a whole request before touching the log, so a failure leaves nothing behind.
    fn append_request(&mut self, events: Vec<Event>) -> Result<Vec<Appended>> {
        // Ids repeated within the request; a request of one (most publishes) cannot repeat one.
        let mut in_request: HashMap<Uuid, usize> = HashMap::new();
        for (i, event) in events.iter().enumerate() {
            if let Some(stored) = self.by_id.get(&event.id) {
                existing(event, stored, i)?;
            } else if events.len() > 1 {
                if let Some(&first) = in_request.get(&event.id) {
                    if !events[first].same_content(event) {
                        return Err(duplicate_error(&event.id).at(&format!("events[{i}]")));
                    }
                } else {
                    in_request.insert(event.id, i);
                }
            }
        }
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            if let Some(existing) = self.by_id.get(&event.id) {
                out.push(Appended {
                    event: existing.clone(),
                    fresh: false,
                });
                continue;
            }
            self.next_position += 1;
            let stored = Arc::new(StoredEvent::new(event, self.next_position));
            self.by_id.insert(stored.event.id, stored.clone());
            self.log.push(stored.clone());
            self.webhooks.outbox(&stored);
            out.push(Appended {
                event: stored,
                fresh: true,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Store for MemoryStore {
    /// Appending costs next to nothing: waiting for company would only add delay.
    fn fixed_commit_cost(&self) -> bool {
        false
    }

    fn groups(&self) -> &dyn GroupStore {
        &self.groups
    }

    fn webhooks(&self) -> &dyn WebhookStore {
        self
    }

    async fn append(&self, requests: Vec<Vec<Event>>) -> Vec<Result<Vec<Appended>>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        requests
            .into_iter()
            .map(|events| state.append_request(events))
            .collect()
    }

    async fn query(&self, query: &Query) -> Result<Vec<SharedEvent>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let wanted = query.limit + 1;
        let in_bounds = |e: &&SharedEvent| {
            query.after_position.is_none_or(|p| e.position > p)
                && query.before_position.is_none_or(|p| e.position < p)
                && query.accepts(e)
        };
        if query.include_archived {
            let mut events: Vec<SharedEvent> = state
                .log
                .iter()
                .chain(state.archive.iter().map(|(e, _)| e))
                .filter(in_bounds)
                .cloned()
                .collect();
            events.sort_by_key(|e| e.position);
            if query.order == Order::Desc {
                events.reverse();
            }
            events.truncate(wanted);
            return Ok(events);
        }
        // The live log is sorted by position: bounds are binary searches.
        let start = query
            .after_position
            .map_or(0, |p| state.log.partition_point(|e| e.position <= p));
        let end = query.before_position.map_or(state.log.len(), |p| {
            state.log.partition_point(|e| e.position < p)
        });
        let window = state.log.get(start..end.max(start)).unwrap_or(&[]);
        Ok(match query.order {
            Order::Asc => window
                .iter()
                .filter(in_bounds)
                .take(wanted)
                .cloned()
                .collect(),
            Order::Desc => window
                .iter()
                .rev()
                .filter(in_bounds)
                .take(wanted)
                .cloned()
                .collect(),
        })
    }

    async fn archive_batch(&self, older_than: DateTime<Utc>, batch: usize) -> Result<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Utc::now();
        let moving: Vec<SharedEvent> = state
            .log
            .iter()
            .filter(|e| e.event.timestamp < older_than)
            .take(batch)
            .cloned()
            .collect();
        for event in &moving {
            state.by_id.remove(&event.event.id);
            state.archive.push((event.clone(), now));
        }
        state
            .log
            .retain(|e| !moving.iter().any(|m| Arc::ptr_eq(m, e)));
        Ok(moving.len() as u64)
    }

    async fn purge_archive_batch(
        &self,
        archived_before: DateTime<Utc>,
        batch: usize,
    ) -> Result<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut removed = 0;
        state.archive.retain(|(_, at)| {
            let purge = *at < archived_before && removed < batch;
            removed += usize::from(purge);
            !purge
        });
        Ok(removed as u64)
    }
}
