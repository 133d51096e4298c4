//! Routes committed events to local subscribers. Each subscriber has its own queue and delivery
//! task, so a slow handler delays only itself; within a subscriber, events arrive in position order
//! and in batches (one crossing into JS per batch, not per event).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{warn, Instrument};

use crate::event::SharedEvent;
use crate::in_flight::InFlight;
use crate::metrics::{Metrics, SinkKind};
use crate::pattern::{any_matches, Pattern};
use crate::query::Query;
use crate::store::Store;

/// Most events handed to a sink in one call.
const MAX_BATCH: usize = 1024;

/// A handler invocation that threw or rejected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct HandlerFailure {
    /// The event it failed on.
    pub position: u64,
    /// What it threw, as text.
    pub message: String,
}

/// What a sink reports for a batch: the handler calls that failed and, when the sink measured
/// them, each event's handler time in seconds (in batch order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Handled {
    /// The calls that threw or rejected.
    pub failures: Vec<HandlerFailure>,
    /// One per event when measured; `None` leaves timing to the caller.
    pub seconds: Option<Vec<f64>>,
}

/// Where a subscriber's events go: a JS handler (napi layer) or Rust code.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Handles a batch in position order; resolves when every handler call has settled and
    /// returns the ones that failed.
    async fn deliver(&self, events: &[SharedEvent]) -> Vec<HandlerFailure>;

    /// As [`Sink::deliver`], with each event's handler time when the sink measures it (the JS
    /// sink does; others are timed as a batch by the caller).
    async fn deliver_timed(&self, events: &[SharedEvent]) -> Handled {
        Handled {
            failures: self.deliver(events).await,
            seconds: None,
        }
    }
}

/// Who a subscription delivers to, as the metrics count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumer {
    /// Handlers (a `subscribe` call): labelled by this name (capped), timed, errors counted.
    Handlers(String),
    /// The SSE hub: events delivered to the SSE sink.
    Sse,
    /// Internal wake-ups (a consumer group's doorbell): not counted as deliveries.
    Wake,
}

/// Bytes an event holds while queued, as the metrics count them.
pub(crate) fn queued_bytes(event: &SharedEvent) -> u64 {
    let e = &event.event;
    (e.payload.get().len() + e.metadata.as_ref().map_or(0, |m| m.get().len()) + e.event_type.len())
        as u64
}

/// Which events a subscriber wants besides its patterns (`subscribe(…, { projectId, tenantId })`);
/// parsed with the rest of the options by `consumer_group::parse_subscribe_options`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriberFilter {
    /// Only this project's events.
    pub project_id: Option<String>,
    /// Only this tenant's events (a tenant-scoped handle's own; another is FORBIDDEN).
    pub tenant_id: Option<String>,
    /// Where delivery starts: `"now"` (default), `"beginning"`, or after a position (exclusive).
    pub from: Option<StartFrom>,
}

/// Where a subscription or a new consumer group starts reading the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// Events committed from now on.
    Now,
    /// Every stored event, then live ones.
    Beginning,
    /// Events after this position (exclusive), then live ones.
    After(u64),
}

pub(crate) fn start_from<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<StartFrom>, D::Error> {
    use serde::de::Error;
    use serde::Deserialize;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) if s == "now" => Ok(Some(StartFrom::Now)),
        serde_json::Value::String(s) if s == "beginning" => Ok(Some(StartFrom::Beginning)),
        serde_json::Value::Number(n) if n.as_u64().is_some() => {
            Ok(n.as_u64().map(StartFrom::After))
        }
        other => Err(D::Error::custom(format!(
            "from must be \"now\", \"beginning\" or a position (a whole number), got {other}"
        ))),
    }
}

impl StartFrom {
    /// The position to replay after, or None to start with live events.
    pub(crate) fn replay_after(self) -> Option<u64> {
        match self {
            StartFrom::After(p) => Some(p),
            StartFrom::Beginning => Some(0),
            StartFrom::Now => None,
        }
    }
}

/// Replays stored events before a subscriber joins the live stream.
pub struct Replay {
    pub store: Arc<dyn Store>,
    pub after: u64,
}

impl SubscriberFilter {
    pub(crate) fn accepts(&self, event: &SharedEvent) -> bool {
        let e = &event.event;
        self.project_id
            .as_ref()
            .is_none_or(|p| e.project_id.as_ref() == Some(p))
            && self
                .tenant_id
                .as_ref()
                .is_none_or(|t| e.tenant_id.as_ref() == Some(t))
    }
}

struct Route {
    id: u64,
    patterns: Vec<Pattern>,
    filter: SubscriberFilter,
    queue: mpsc::UnboundedSender<SharedEvent>,
    /// Its consumer's metrics label, for handler subscriptions.
    label: Option<String>,
    /// Events routed to it and not yet handled (shared with its delivery task).
    queued: Arc<AtomicU64>,
}

pub struct Router {
    routes: RwLock<Vec<Route>>,
    tasks: Mutex<HashMap<u64, JoinHandle<()>>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    /// Events queued for or being handled by subscribers.
    pending: Arc<InFlight>,
    /// Their bytes (see [`queued_bytes`]).
    buffered: Arc<AtomicU64>,
    /// Highest position this instance committed; a live subscriber starts after it, so it never
    /// receives an event whose publish resolved before it subscribed.
    head: AtomicU64,
    /// Delivery tasks run here, also when `subscribe` is called from outside the runtime (napi).
    runtime: tokio::runtime::Handle,
    /// Rung whenever committed events are routed (e.g. the webhook workers: deliveries may be due).
    observers: RwLock<Vec<Arc<tokio::sync::Notify>>>,
}

/// Handle to one subscription. Dropping it does not unsubscribe (like an EventEmitter listener).
#[derive(Clone)]
pub struct Subscription {
    id: u64,
    cancelled: Arc<AtomicBool>,
    router: Weak<Router>,
}

impl Subscription {
    /// Stops delivery at once: queued events are dropped, a batch in flight stops at the
    /// next handler call (the sink checks `is_active`).
    pub fn unsubscribe(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if let Some(router) = self.router.upgrade() {
            router.remove(self.id);
        }
    }

    /// Until `unsubscribe` is called.
    pub fn is_active(&self) -> bool {
        !self.cancelled.load(Ordering::SeqCst)
    }

    pub(crate) fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancelled.clone()
    }
}

impl Router {
    /// Must be called within a tokio runtime; delivery tasks are spawned on it.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Router> {
        Arc::new(Router {
            routes: RwLock::new(Vec::new()),
            tasks: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            metrics,
            pending: Arc::new(InFlight::default()),
            buffered: Arc::default(),
            head: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::current(),
            observers: RwLock::new(Vec::new()),
        })
    }

    /// Registers a subscriber. With `replay`, stored events after `replay.after` are delivered
    /// first; live events queue meanwhile (registration comes before the first read, so nothing
    /// falls between), and those already replayed are skipped (nothing twice).
    pub fn subscribe(
        self: &Arc<Self>,
        patterns: Vec<Pattern>,
        filter: SubscriberFilter,
        sink: Arc<dyn Sink>,
        consumer: Consumer,
        replay: Option<Replay>,
        span: tracing::Span,
    ) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let cancelled = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::unbounded_channel();
        let replay = replay.map(|r| {
            let query = Query {
                types: patterns.clone(),
                project_id: filter.project_id.clone(),
                tenant_id: filter.tenant_id.clone(),
                limit: MAX_BATCH,
                ..Query::default()
            };
            (r, query)
        });
        let consumer = match consumer {
            Consumer::Handlers(name) => Consumer::Handlers(self.metrics.consumer(&name)),
            other => other,
        };
        let label = match &consumer {
            Consumer::Handlers(name) => Some(name.clone()),
            _ => None,
        };
        let queued = Arc::new(AtomicU64::new(0));
        let delivery = Delivery {
            sink,
            consumer,
            cancelled: cancelled.clone(),
            metrics: self.metrics.clone(),
            pending: self.pending.clone(),
            buffered: self.buffered.clone(),
            queued: queued.clone(),
        };
        // The route exists before the replay reads anything (so no event falls between the
        // replay and the live queue), and the head is read with the route table locked (so a
        // live subscriber skips exactly what was routed before it existed).
        let start_after = {
            let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
            let head = self.head.load(Ordering::SeqCst);
            routes.push(Route {
                id,
                patterns,
                filter,
                queue: tx,
                label,
                queued,
            });
            head
        };
        let task = self
            .runtime
            .spawn(deliver_loop(rx, delivery, replay, start_after).instrument(span));
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, task);
        Subscription {
            id,
            cancelled,
            router: Arc::downgrade(self),
        }
    }

    fn remove(&self, id: u64) {
        // Dropping the route drops the queue's sender; the task sees `cancelled` and ends.
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|r| r.id != id);
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    pub fn subscriber_count(&self) -> usize {
        self.routes.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Rings `notify` each time committed events are routed.
    pub fn observe(&self, notify: Arc<tokio::sync::Notify>) {
        self.observers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(notify);
    }

    /// Queues committed events (in position order) for every matching subscriber.
    pub fn dispatch(&self, events: &[SharedEvent]) {
        if !events.is_empty() {
            for observer in self
                .observers
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                observer.notify_one();
            }
        }
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        if routes.is_empty() {
            return;
        }
        for event in events {
            for route in routes.iter() {
                if route.filter.accepts(event)
                    && any_matches(&route.patterns, &event.event.event_type)
                {
                    // Counted before sending so the delivery task can never count below zero.
                    self.pending.add(1);
                    let bytes = queued_bytes(event);
                    self.buffered.fetch_add(bytes, Ordering::Relaxed);
                    route.queued.fetch_add(1, Ordering::Relaxed);
                    if route.queue.send(event.clone()).is_err() {
                        // The subscriber is going away.
                        self.pending.done(1);
                        self.buffered.fetch_sub(bytes, Ordering::Relaxed);
                        route.queued.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Counts events handed over for routing but not yet dispatched as pending deliveries, and
    /// moves the head past them.
    pub fn hold(&self, n: usize, last_position: u64) {
        self.pending.add(n);
        self.head.fetch_max(last_position, Ordering::SeqCst);
    }

    pub fn release(&self, n: usize) {
        self.pending.done(n);
    }

    pub fn pending(&self) -> usize {
        self.pending.get()
    }

    /// Events routed and not yet handled, per handler consumer label (subscriptions with the same
    /// patterns add up).
    pub fn queue_depths(&self) -> Vec<(String, u64)> {
        let mut depths: HashMap<String, u64> = HashMap::new();
        for route in self.routes.read().unwrap_or_else(|p| p.into_inner()).iter() {
            if let Some(label) = &route.label {
                *depths.entry(label.clone()).or_default() += route.queued.load(Ordering::Relaxed);
            }
        }
        let mut depths: Vec<(String, u64)> = depths.into_iter().collect();
        depths.sort();
        depths
    }

    /// Bytes of the events queued for subscribers (see [`queued_bytes`]).
    pub fn buffered_bytes(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
    }

    /// The last position routed (or handed over for routing) in this process.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::SeqCst)
    }

    /// The count of pending deliveries, for work routed here but done elsewhere (group members).
    pub fn pending_count(&self) -> Arc<InFlight> {
        self.pending.clone()
    }

    /// Calls `watcher` whenever pending deliveries go from none to some or back (see
    /// [`crate::in_flight::Watcher`]); only the first watcher is kept.
    pub fn watch_pending(&self, watcher: crate::in_flight::Watcher) -> bool {
        self.pending.watch(watcher)
    }

    /// Resolves once every event routed so far has been handled (or dropped by an unsubscribe).
    pub async fn idle(&self) {
        self.pending.idle().await;
    }

    /// Ends every subscription after its queued events are delivered, and waits for that.
    pub async fn drain(&self) {
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (_, task) in tasks {
            if let Err(e) = task.await {
                warn!(error = %e, "delivery task ended abnormally");
            }
        }
    }
}

struct Delivery {
    sink: Arc<dyn Sink>,
    consumer: Consumer,
    cancelled: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    pending: Arc<InFlight>,
    buffered: Arc<AtomicU64>,
    /// This subscription's share of `pending`.
    queued: Arc<AtomicU64>,
}

impl Delivery {
    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    async fn deliver(&self, batch: &[SharedEvent]) {
        let name = match &self.consumer {
            Consumer::Handlers(name) => name,
            Consumer::Sse => {
                self.sink.deliver(batch).await;
                self.metrics.delivered_to(SinkKind::Sse, batch.len() as u64);
                return;
            }
            Consumer::Wake => {
                self.sink.deliver(batch).await;
                return;
            }
        };
        let span = tracing::debug_span!(
            "process",
            messaging.system = crate::trace_context::MESSAGING_SYSTEM,
            messaging.operation.type = "process",
            messaging.destination.name = batch.first().map(|e| e.event.event_type.as_str()),
            messaging.batch.message_count = batch.len(),
            messaging.message.id = tracing::field::Empty,
            consumer = name.as_str(),
            otel.name = tracing::field::Empty,
            otel.kind = "consumer",
        );
        process_span(&span, batch);
        let started = Instant::now();
        let handled = self.sink.deliver_timed(batch).instrument(span).await;
        let seconds = handled
            .seconds
            .unwrap_or_else(|| even_split(started.elapsed(), batch.len()));
        let failed = handled.failures.len().min(batch.len());
        Metrics::add(&self.metrics.delivery_batches, 1);
        Metrics::add(&self.metrics.delivered, (batch.len() - failed) as u64);
        self.metrics
            .delivered_to(SinkKind::Subscriber, (batch.len() - failed) as u64);
        self.metrics.handled(name, &seconds, failed as u64);
        for failure in handled.failures {
            warn!(position = failure.position, error = %failure.message, "event handler failed");
        }
    }

    /// Delivers stored events after `after`; returns the last position delivered.
    async fn replay(&self, replay: &Replay, mut query: Query) -> u64 {
        let mut last = replay.after;
        let mut failures = 0u32;
        while !self.cancelled() {
            query.after_position = Some(last);
            match replay.store.query(&query).await {
                Ok(mut rows) => {
                    failures = 0;
                    rows.truncate(MAX_BATCH);
                    let Some(end) = rows.last().map(|e| e.position) else {
                        break;
                    };
                    self.deliver(&rows).await;
                    last = end;
                    if rows.len() < MAX_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    failures += 1;
                    warn!(error = %e, "replaying stored events failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(50))))
                        .await;
                }
            }
        }
        last
    }
}

/// A batch's time shared evenly among its events (for sinks that do not time each one).
pub(crate) fn even_split(took: Duration, events: usize) -> Vec<f64> {
    let each = took.as_secs_f64() / events.max(1) as f64;
    vec![each; events]
}

async fn deliver_loop(
    mut rx: mpsc::UnboundedReceiver<SharedEvent>,
    delivery: Delivery,
    replay: Option<(Replay, Query)>,
    start_after: u64,
) {
    // Live events at or before this position were delivered by the replay, or committed before
    // this subscriber existed.
    let mut replayed_up_to = match replay {
        Some((replay, query)) => delivery.replay(&replay, query).await,
        None => start_after,
    };
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let received = batch.len();
        let mut bytes: u64 = batch.iter().map(queued_bytes).sum();
        if delivery.cancelled() {
            // Unsubscribed: what is still queued will never be handled.
            rx.close();
            while let Ok(event) = rx.try_recv() {
                bytes += queued_bytes(&event);
                delivery.pending.done(1);
            }
            delivery.pending.done(received);
            delivery.buffered.fetch_sub(bytes, Ordering::Relaxed);
            delivery.queued.store(0, Ordering::Relaxed);
            break;
        }
        // Live events the replay already delivered are skipped.
        if replayed_up_to > 0 {
            batch.retain(|e| e.position > replayed_up_to);
            if batch.last().is_some() {
                replayed_up_to = 0;
            }
        }
        if !batch.is_empty() {
            delivery.deliver(&batch).await;
        }
        delivery.pending.done(received);
        delivery.buffered.fetch_sub(bytes, Ordering::Relaxed);
        delivery
            .queued
            .fetch_sub(received as u64, Ordering::Relaxed);
        batch.clear();
    }
}

/// Fills in what a "process" span knows once made (nothing when it is filtered out): the message
/// id of a batch of one, and the export name and parent (from the first event of the batch).
pub(crate) fn process_span(span: &tracing::Span, batch: &[crate::event::SharedEvent]) {
    if span.is_disabled() {
        return;
    }
    let Some(first) = batch.first() else { return };
    if batch.len() == 1 {
        span.record("messaging.message.id", first.event.id.to_string().as_str());
    }
    crate::trace_context::export_as(
        span,
        "process",
        first.event.event_type.as_str(),
        Some(&first.event),
    );
}
