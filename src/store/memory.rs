//! In-process store for tests and demos: the same contract as the durable backends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use uuid::Uuid;

use super::{duplicate_error, Appended, Store};
use crate::error::Result;
use crate::event::{Event, SharedEvent, StoredEvent};
use crate::query::{Order, Query};

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// `log[i]` holds position `i + 1`.
    log: Vec<SharedEvent>,
    by_id: HashMap<Uuid, SharedEvent>,
}

impl State {
    /// Checks a whole request before touching the log, so a failure leaves nothing behind.
    fn append_request(&mut self, events: Vec<Event>) -> Result<Vec<Appended>> {
        let mut in_request: HashMap<Uuid, usize> = HashMap::new();
        for (i, event) in events.iter().enumerate() {
            if let Some(existing) = self.by_id.get(&event.id) {
                if !existing.event.same_content(event) {
                    return Err(duplicate_error(&event.id).at(&format!("events[{i}]")));
                }
            } else if let Some(&first) = in_request.get(&event.id) {
                if !events[first].same_content(event) {
                    return Err(duplicate_error(&event.id).at(&format!("events[{i}]")));
                }
            } else {
                in_request.insert(event.id, i);
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
            let stored = Arc::new(StoredEvent::new(event, self.log.len() as u64 + 1));
            self.by_id.insert(stored.event.id, stored.clone());
            self.log.push(stored.clone());
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
        // Positions are dense, so bounds become slice indexes.
        let start = query
            .after_position
            .map_or(0, |p| (p as usize).min(state.log.len()));
        let end = query.before_position.map_or(state.log.len(), |p| {
            (p as usize).saturating_sub(1).min(state.log.len())
        });
        let window = state.log.get(start..end.max(start)).unwrap_or(&[]);
        let pick = |e: &&SharedEvent| query.accepts(e);
        Ok(match query.order {
            Order::Asc => window.iter().filter(pick).take(wanted).cloned().collect(),
            Order::Desc => window
                .iter()
                .rev()
                .filter(pick)
                .take(wanted)
                .cloned()
                .collect(),
        })
    }
}
