//! The SSE hub: one router subscription feeds a bounded ring of recent events and every open
//! stream's queue. A stream registers under the hub's lock after taking its replay snapshot, so
//! the replay (store, then ring) and the live queue meet with no gap and no duplicate.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use axum::body::Bytes;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::Filter;
use crate::error::Result;
use crate::event::SharedEvent;
use crate::metrics::Metrics;
use crate::query::{Order, Query};
use crate::router::{HandlerFailure, Sink};
use crate::store::Store;

/// What a stream receives.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// Shared by every stream it goes to: rendered once per wire format.
    Event(Arc<Frame>),
    /// The client's last id is older than the retained history: it should refetch.
    Reset,
}

/// An event and its SSE rendering, made on first use and reused for every stream (rendering per
/// stream cost more than sending at thousands of streams).
#[derive(Debug)]
pub struct Frame {
    pub event: SharedEvent,
    named: OnceLock<Bytes>,
    plain: OnceLock<Bytes>,
}

impl Frame {
    pub fn new(event: SharedEvent) -> Arc<Frame> {
        Arc::new(Frame {
            event,
            named: OnceLock::new(),
            plain: OnceLock::new(),
        })
    }

    /// `id:`, `event:` (when `named`) and `data:` lines.
    pub fn bytes(&self, named: bool) -> Bytes {
        let cell = if named { &self.named } else { &self.plain };
        cell.get_or_init(|| Bytes::from(super::render_event(&self.event, named)))
            .clone()
    }
}

pub struct Hub {
    state: Mutex<State>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    ring_size: usize,
    client_buffer: usize,
    next_id: AtomicU64,
}

struct State {
    ring: VecDeque<SharedEvent>,
    /// Every event after this position has passed through the ring (the ring still holds those
    /// after the last one it evicted).
    covered_from: u64,
    clients: Vec<Client>,
    /// One shared filter per distinct selection/grant, so a broadcast checks each event once per
    /// distinct filter rather than once per stream (thousands of streams usually share a few).
    filters: HashMap<String, Weak<Filter>>,
}

struct Client {
    id: u64,
    filter: Arc<Filter>,
    /// The filter's key in `State::filters`.
    key: String,
    tx: mpsc::Sender<Outbound>,
}

/// An open stream: its replay from the store (if any) comes first, then `rx`.
pub struct Connection {
    pub id: u64,
    /// Store replay range (after, up to and including), read before `rx`.
    pub store_replay: Option<(u64, u64)>,
    /// The newest position the hub had when the stream registered: a client that resumes
    /// after it misses nothing (what follows comes through `rx`).
    pub head: u64,
    pub rx: mpsc::Receiver<Outbound>,
    hub: Arc<Hub>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}

impl State {
    /// Drops a closed stream's hold on its shared filter (the entry goes with the last holder).
    fn forget_filter(&mut self, client: Client) {
        let Client { filter, key, .. } = client;
        if Arc::strong_count(&filter) == 1 {
            self.filters.remove(&key);
        }
    }
}

impl Hub {
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        covered_from: u64,
        ring_size: usize,
        client_buffer: usize,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            state: Mutex::new(State {
                ring: VecDeque::with_capacity(ring_size.min(65_536)),
                covered_from,
                clients: Vec::new(),
                filters: HashMap::new(),
            }),
            store,
            metrics,
            ring_size,
            client_buffer,
            next_id: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a stream for `filter`, replaying what it missed after `last_event_id`.
    pub fn connect(self: &Arc<Self>, filter: Filter, last_event_id: Option<u64>) -> Connection {
        let (tx, rx) = mpsc::channel(self.client_buffer);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        let mut store_replay = None;
        if let Some(last) = last_event_id {
            if last < state.covered_from {
                store_replay = Some((last, state.covered_from));
            }
            // The ring part of the replay goes into the queue first (the queue is sized for it
            // plus the live backlog; what does not fit drops the client like any slow one).
            for e in state.ring.iter().filter(|e| e.position > last) {
                if filter.accepts(e) && tx.try_send(Outbound::Event(Frame::new(e.clone()))).is_err()
                {
                    break;
                }
            }
        }
        let head = state
            .ring
            .back()
            .map_or(state.covered_from, |e| e.position.max(state.covered_from));
        let key = format!("{filter:?}");
        let shared = match state.filters.get(&key).and_then(Weak::upgrade) {
            Some(existing) => existing,
            None => {
                let shared = Arc::new(filter);
                state.filters.insert(key.clone(), Arc::downgrade(&shared));
                shared
            }
        };
        state.clients.push(Client {
            id,
            filter: shared,
            key,
            tx: tx.clone(),
        });
        Metrics::add(&self.metrics.sse_connections, 1);
        drop(state);
        Connection {
            id,
            store_replay,
            head,
            rx,
            hub: self.clone(),
        }
    }

    fn remove(&self, id: u64) {
        let mut state = self.lock();
        if let Some(i) = state.clients.iter().position(|c| c.id == id) {
            let client = state.clients.swap_remove(i);
            state.forget_filter(client);
            self.metrics.sse_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Ends every stream (their queues close once drained).
    pub fn close_all(&self) {
        let mut state = self.lock();
        let n = state.clients.len() as u64;
        state.clients.clear();
        state.filters.clear();
        self.metrics.sse_connections.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn connections(&self) -> usize {
        self.lock().clients.len()
    }

    /// Adds committed events (in position order) to the ring and every matching stream; a
    /// stream whose queue is full is closed (its client reconnects with its last id).
    fn publish(&self, events: &[SharedEvent]) {
        let mut state = self.lock();
        for e in events {
            if self.ring_size == 0 {
                state.covered_from = e.position;
            } else {
                if state.ring.len() == self.ring_size {
                    if let Some(old) = state.ring.pop_front() {
                        state.covered_from = old.position;
                    }
                }
                state.ring.push_back(e.clone());
            }
        }
        let frames: Vec<Arc<Frame>> = events.iter().map(|e| Frame::new(e.clone())).collect();
        // Which frames each distinct filter accepts, worked out once per filter.
        let mut accepted: HashMap<*const Filter, Vec<Arc<Frame>>> = HashMap::new();
        let mut dropped = Vec::new();
        for client in &state.clients {
            let frames = accepted
                .entry(Arc::as_ptr(&client.filter))
                .or_insert_with(|| {
                    frames
                        .iter()
                        .filter(|f| client.filter.accepts(&f.event))
                        .cloned()
                        .collect()
                });
            for f in frames.iter() {
                if client.tx.try_send(Outbound::Event(f.clone())).is_err() {
                    dropped.push(client.id);
                    break;
                }
            }
        }
        if !dropped.is_empty() {
            let (gone, kept): (Vec<Client>, Vec<Client>) = std::mem::take(&mut state.clients)
                .into_iter()
                .partition(|c| dropped.contains(&c.id));
            state.clients = kept;
            for client in gone {
                state.forget_filter(client);
            }
            self.metrics
                .sse_connections
                .fetch_sub(dropped.len() as u64, Ordering::Relaxed);
            Metrics::add(&self.metrics.sse_dropped, dropped.len() as u64);
            tracing::debug!(count = dropped.len(), "slow SSE clients dropped");
        }
    }

    /// Stored events in (after, up_to] for `filter`, one page; empty when done.
    pub async fn replay_page(
        &self,
        filter: &Filter,
        after: u64,
        up_to: u64,
    ) -> Result<Vec<SharedEvent>> {
        let query = Query {
            types: filter.query_types(),
            project_id: filter.query_project(),
            tenant_id: filter.query_tenant(),
            after_position: Some(after),
            before_position: Some(up_to.saturating_add(1)),
            limit: 500,
            order: Order::Asc,
            ..Query::default()
        };
        let mut rows = self.store.query(&query).await?;
        rows.truncate(500);
        Ok(rows)
    }

    /// Whether `last_event_id` is older than the log still holds (archived or deleted since).
    pub async fn is_before_history(&self, last_event_id: u64) -> Result<bool> {
        let query = Query {
            limit: 1,
            order: Order::Asc,
            ..Query::default()
        };
        let oldest = self.store.query(&query).await?.first().map(|e| e.position);
        Ok(oldest.is_some_and(|oldest| last_event_id.saturating_add(1) < oldest))
    }
}

/// The router subscription that feeds the hub.
pub struct HubSink(pub Arc<Hub>);

#[async_trait]
impl Sink for HubSink {
    async fn deliver(&self, events: &[SharedEvent]) -> Vec<HandlerFailure> {
        self.0.publish(events);
        Vec::new()
    }
}
