//! The SSE hub: one router subscription feeds a bounded ring of recent events (for replay) and
//! one feed per distinct filter. A feed is a bounded ring of the events its filter accepts,
//! shared by every stream with that filter; each stream reads it with its own cursor. Publishing
//! an event therefore costs a match and a push per distinct filter, not a queue push per stream.
//! A stream registers under the hub's lock after taking its replay snapshot, so the replay (store,
//! then ring) and the live feed meet with no gap and no duplicate.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Poll;

use axum::body::Bytes;

use async_trait::async_trait;
use futures_util::task::AtomicWaker;

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

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The live events one distinct filter accepts, in order, numbered by a sequence of its own.
struct Feed {
    filter: Filter,
    key: String,
    ring: Mutex<FeedRing>,
}

struct FeedRing {
    frames: VecDeque<Arc<Frame>>,
    /// The sequence number of `frames[0]`.
    first: u64,
}

impl FeedRing {
    fn next(&self) -> u64 {
        self.first + self.frames.len() as u64
    }
}

/// What a read of a feed found.
enum Read {
    Frames(Vec<Outbound>),
    Nothing,
    /// The cursor fell out of the ring: the stream was too slow.
    Behind,
}

impl Feed {
    /// Appends frames, keeping at most `capacity`; returns the oldest sequence still held.
    fn push(&self, frames: Vec<Arc<Frame>>, capacity: usize) -> u64 {
        let mut ring = locked(&self.ring);
        for f in frames {
            if ring.frames.len() == capacity {
                ring.frames.pop_front();
                ring.first += 1;
            }
            ring.frames.push_back(f);
        }
        ring.first
    }

    /// Frames from the reader's cursor on; the cursor moves under the ring's lock, so a publish
    /// never judges a reader that has just caught up by its old cursor.
    fn read(&self, reader: &Reader, max: usize) -> Read {
        let ring = locked(&self.ring);
        // Only this stream moves its cursor, and only under this lock.
        let cursor = reader.cursor.load(Ordering::Relaxed);
        if cursor < ring.first {
            return Read::Behind;
        }
        let start = (cursor - ring.first) as usize;
        if start >= ring.frames.len() {
            return Read::Nothing;
        }
        let out: Vec<Outbound> = ring
            .frames
            .range(start..)
            .take(max)
            .map(|f| Outbound::Event(f.clone()))
            .collect();
        reader
            .cursor
            .store(cursor + out.len() as u64, Ordering::Release);
        Read::Frames(out)
    }
}

/// Called when the hub drops a stream as too slow: the transport closes its connection (a
/// client that stopped reading never lets the stream be polled again).
pub type OnDrop = Arc<dyn Fn() + Send + Sync>;

/// A stream's position in its feed, visible to the hub so it can drop a stream too far behind,
/// and its waker (one per stream: a shared waiter list made every wake-up contend on one lock).
struct Reader {
    cursor: AtomicU64,
    ended: AtomicBool,
    waker: AtomicWaker,
    on_drop: Option<OnDrop>,
}

impl Reader {
    fn end(&self) {
        self.ended.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn drop_slow(&self) {
        self.end();
        if let Some(on_drop) = &self.on_drop {
            on_drop();
        }
    }
}

/// A feed and the streams reading it.
struct FeedEntry {
    feed: Arc<Feed>,
    readers: HashMap<u64, Arc<Reader>>,
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
    ring: VecDeque<Arc<Frame>>,
    /// Every event after this position has passed through the ring (the ring still holds those
    /// after the last one it evicted).
    covered_from: u64,
    /// By filter key (`format!("{filter:?}")`): thousands of streams usually share a few.
    feeds: HashMap<String, FeedEntry>,
    connections: usize,
}

/// An open stream: its replay from the store (if any) comes first, then the ring's part of the
/// replay, then its feed from where it registered.
pub struct Connection {
    pub id: u64,
    /// Store replay range (after, up to and including), read before the rest.
    pub store_replay: Option<(u64, u64)>,
    /// The newest position the hub had when the stream registered: a client that resumes
    /// after it misses nothing (what follows comes through the feed).
    pub head: u64,
    backlog: VecDeque<Outbound>,
    feed: Arc<Feed>,
    reader: Arc<Reader>,
    hub: Arc<Hub>,
}

impl Connection {
    /// The filter this stream reads by (its feed's).
    pub fn filter(&self) -> &Filter {
        &self.feed.filter
    }

    /// The next messages (at least one) after the store replay, or None once the stream was
    /// dropped as too slow or the hub closed.
    pub async fn next(&mut self, max: usize) -> Option<Vec<Outbound>> {
        if !self.backlog.is_empty() {
            let n = max.min(self.backlog.len());
            return Some(self.backlog.drain(..n).collect());
        }
        std::future::poll_fn(|cx| {
            // Registered before looking, so a push between the look and the wait still wakes us.
            self.reader.waker.register(cx.waker());
            if self.reader.ended.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
            match self.feed.read(&self.reader, max) {
                Read::Frames(out) => Poll::Ready(Some(out)),
                Read::Behind => Poll::Ready(None),
                Read::Nothing => Poll::Pending,
            }
        })
        .await
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.hub.remove(&self.feed.key, self.id);
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
                feeds: HashMap::new(),
                connections: 0,
            }),
            store,
            metrics,
            ring_size,
            client_buffer: client_buffer.max(1),
            next_id: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        locked(&self.state)
    }

    /// Opens a stream for `filter`, replaying what it missed after `last_event_id`.
    pub fn connect(
        self: &Arc<Self>,
        filter: Filter,
        last_event_id: Option<u64>,
        on_drop: Option<OnDrop>,
    ) -> Connection {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        let mut store_replay = None;
        let mut backlog = VecDeque::new();
        if let Some(last) = last_event_id {
            if last < state.covered_from {
                store_replay = Some((last, state.covered_from));
            }
            backlog.extend(
                state
                    .ring
                    .iter()
                    .filter(|f| f.event.position > last && filter.accepts(&f.event))
                    .map(|f| Outbound::Event(f.clone())),
            );
        }
        let head = state.ring.back().map_or(state.covered_from, |f| {
            f.event.position.max(state.covered_from)
        });
        let key = format!("{filter:?}");
        let entry = state.feeds.entry(key.clone()).or_insert_with(|| FeedEntry {
            feed: Arc::new(Feed {
                filter,
                key,
                ring: Mutex::new(FeedRing {
                    frames: VecDeque::new(),
                    first: 0,
                }),
            }),
            readers: HashMap::new(),
        });
        let feed = entry.feed.clone();
        let cursor = locked(&feed.ring).next();
        let reader = Arc::new(Reader {
            cursor: AtomicU64::new(cursor),
            ended: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            on_drop,
        });
        entry.readers.insert(id, reader.clone());
        state.connections += 1;
        self.metrics.sse_connections.inc();
        drop(state);
        Connection {
            id,
            store_replay,
            head,
            backlog,
            feed,
            reader,
            hub: self.clone(),
        }
    }

    fn remove(&self, key: &str, id: u64) {
        let mut state = self.lock();
        let Some(entry) = state.feeds.get_mut(key) else {
            return;
        };
        if entry.readers.remove(&id).is_some() {
            if entry.readers.is_empty() {
                state.feeds.remove(key);
            }
            state.connections -= 1;
            self.metrics.sse_connections.dec();
        }
    }

    /// Ends every stream.
    pub fn close_all(&self) {
        let mut state = self.lock();
        for entry in std::mem::take(&mut state.feeds).into_values() {
            for reader in entry.readers.values() {
                reader.end();
            }
        }
        let n = std::mem::take(&mut state.connections) as u64;
        self.metrics.sse_connections.dec_by(n as i64);
    }

    #[cfg(test)]
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// Adds committed events (in position order) to the ring and to every feed whose filter
    /// accepts them; a stream that falls out of its feed's ring is ended (its client reconnects
    /// with its last id).
    fn publish(&self, events: &[SharedEvent]) {
        let frames: Vec<Arc<Frame>> = events.iter().map(|e| Frame::new(e.clone())).collect();
        let mut state = self.lock();
        for f in &frames {
            if self.ring_size == 0 {
                state.covered_from = f.event.position;
            } else {
                if state.ring.len() == self.ring_size {
                    if let Some(old) = state.ring.pop_front() {
                        state.covered_from = old.event.position;
                    }
                }
                state.ring.push_back(f.clone());
            }
        }
        let mut dropped = 0usize;
        state.feeds.retain(|_, entry| {
            let accepted: Vec<Arc<Frame>> = frames
                .iter()
                .filter(|f| entry.feed.filter.accepts(&f.event))
                .cloned()
                .collect();
            if accepted.is_empty() {
                return true;
            }
            let first = entry.feed.push(accepted, self.client_buffer);
            entry.readers.retain(|_, reader| {
                if reader.cursor.load(Ordering::Acquire) < first {
                    reader.drop_slow();
                    dropped += 1;
                    return false;
                }
                reader.waker.wake();
                true
            });
            !entry.readers.is_empty()
        });
        if dropped > 0 {
            state.connections -= dropped;
            self.metrics.sse_connections.dec_by(dropped as i64);
            Metrics::add(&self.metrics.sse_dropped, dropped as u64);
            tracing::debug!(count = dropped, "slow SSE clients dropped");
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::event::{Event, StoredEvent};
    use crate::store::memory::MemoryStore;
    use crate::transport::sse::{Grant, Selection};

    /// An event at `position` (shared with the server's tests).
    pub(in crate::transport::sse) fn event(
        position: u64,
        event_type: &str,
        tenant: &str,
    ) -> SharedEvent {
        let payload = serde_json::value::RawValue::from_string("{}".into()).expect("json");
        Arc::new(StoredEvent::new(
            Event {
                id: uuid::Uuid::now_v7(),
                event_type: event_type.into(),
                payload,
                timestamp: chrono::Utc::now(),
                project_id: None,
                tenant_id: Some(tenant.into()),
                user_id: None,
                metadata: None,
                id_generated: true,
            },
            position,
        ))
    }

    fn filter(types: &[&str], tenant: &str) -> Filter {
        let selection = Selection {
            types: Some(types.iter().map(|t| t.to_string()).collect()),
            ..Selection::default()
        };
        let grant = Grant {
            tenant_id: Some(tenant.into()),
            ..Grant::default()
        };
        Filter::new(selection, grant).expect("filter")
    }

    fn hub(client_buffer: usize) -> (Arc<Hub>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        (
            Hub::new(store, metrics.clone(), 0, 100, client_buffer),
            metrics,
        )
    }

    fn positions(batch: &[Outbound]) -> Vec<u64> {
        batch
            .iter()
            .map(|m| match m {
                Outbound::Event(f) => f.event.position,
                Outbound::Reset => 0,
            })
            .collect()
    }

    #[tokio::test]
    async fn streams_with_one_filter_share_a_feed_and_each_reads_every_event() {
        let (hub, _) = hub(16);
        let mut a = hub.connect(filter(&["order.*"], "t1"), None, None);
        let mut b = hub.connect(filter(&["order.*"], "t1"), None, None);
        let mut other = hub.connect(filter(&["user.*"], "t1"), None, None);
        assert_eq!(hub.lock().feeds.len(), 2);
        hub.publish(&[
            event(1, "order.created", "t1"),
            event(2, "user.created", "t1"),
            event(3, "order.paid", "t2"),
            event(4, "order.paid", "t1"),
        ]);
        assert_eq!(positions(&a.next(10).await.expect("a")), [1, 4]);
        assert_eq!(positions(&b.next(1).await.expect("b")), [1]);
        assert_eq!(positions(&b.next(10).await.expect("b")), [4]);
        assert_eq!(positions(&other.next(10).await.expect("other")), [2]);
        assert!(Arc::ptr_eq(&a.feed, &b.feed));
        assert!(!Arc::ptr_eq(&a.feed, &other.feed));
    }

    #[tokio::test]
    async fn a_waiting_stream_wakes_on_the_next_matching_event() {
        let (hub, _) = hub(16);
        let mut a = hub.connect(filter(&["order.*"], "t1"), None, None);
        let waiting = tokio::spawn(async move { a.next(10).await.map(|b| positions(&b)) });
        tokio::task::yield_now().await;
        hub.publish(&[event(1, "user.created", "t1")]);
        hub.publish(&[event(2, "order.created", "t1")]);
        assert_eq!(waiting.await.expect("join"), Some(vec![2]));
    }

    #[tokio::test]
    async fn a_stream_a_whole_buffer_behind_is_ended_and_counted_while_others_go_on() {
        let (hub, metrics) = hub(4);
        let closed = Arc::new(AtomicU64::new(0));
        let on_drop = |closed: &Arc<AtomicU64>| -> Option<OnDrop> {
            let closed = closed.clone();
            Some(Arc::new(move || {
                closed.fetch_add(1, Ordering::Relaxed);
            }))
        };
        let mut slow = hub.connect(filter(&["**"], "t1"), None, on_drop(&closed));
        let mut fast = hub.connect(filter(&["**"], "t1"), None, on_drop(&closed));
        for p in 1..=4 {
            hub.publish(&[event(p, "a.b", "t1")]);
            assert_eq!(positions(&fast.next(10).await.expect("fast")), [p]);
        }
        assert_eq!(metrics.sse_dropped.get(), 0);
        hub.publish(&[event(5, "a.b", "t1")]);
        assert_eq!(metrics.sse_dropped.get(), 1);
        assert_eq!(
            closed.load(Ordering::Relaxed),
            1,
            "the slow one's connection is closed"
        );
        assert!(slow.next(10).await.is_none());
        assert_eq!(positions(&fast.next(10).await.expect("fast")), [5]);
        assert_eq!(hub.connections(), 1);
        drop(slow);
        drop(fast);
        assert_eq!(hub.connections(), 0);
        assert_eq!(metrics.sse_connections.get(), 0);
        assert!(hub.lock().feeds.is_empty());
    }

    #[tokio::test]
    async fn a_resuming_stream_gets_the_ring_then_live_events_with_no_gap() {
        let (hub, _) = hub(16);
        hub.publish(&[event(1, "a.b", "t1"), event(2, "a.b", "t2")]);
        hub.publish(&[event(3, "a.b", "t1")]);
        let mut resumed = hub.connect(filter(&["**"], "t1"), Some(1), None);
        assert_eq!(resumed.store_replay, None);
        assert_eq!(resumed.head, 3);
        hub.publish(&[event(4, "a.b", "t1")]);
        let mut seen = Vec::new();
        while seen.len() < 2 {
            seen.extend(positions(&resumed.next(10).await.expect("resumed")));
        }
        assert_eq!(seen, [3, 4]);
    }

    #[tokio::test]
    async fn closing_the_hub_ends_waiting_streams() {
        let (hub, metrics) = hub(16);
        let mut a = hub.connect(filter(&["**"], "t1"), None, None);
        let waiting = tokio::spawn(async move { a.next(10).await.is_none() });
        tokio::task::yield_now().await;
        hub.close_all();
        assert!(waiting.await.expect("join"));
        assert_eq!(metrics.sse_connections.get(), 0);
    }
}
