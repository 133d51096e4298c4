//! Routes committed events to local subscribers. Each subscriber has its own queue and delivery
//! task, so a slow handler delays only itself; within a subscriber, events arrive in position order
//! and in batches (one crossing into JS per batch, not per event).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{warn, Instrument};

use crate::event::SharedEvent;
use crate::in_flight::InFlight;
use crate::metrics::Metrics;
use crate::pattern::{any_matches, Pattern};

/// Most events handed to a sink in one call.
const MAX_BATCH: usize = 1024;

/// A handler invocation that threw or rejected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct HandlerFailure {
    pub position: u64,
    pub message: String,
}

/// Where a subscriber's events go: a JS handler (napi layer) or Rust code.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Handles a batch in position order; resolves when every handler call has settled and
    /// returns the ones that failed.
    async fn deliver(&self, events: &[SharedEvent]) -> Vec<HandlerFailure>;
}

/// Which events a subscriber wants besides its patterns (`subscribe(…, { projectId, tenantId })`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscriberFilter {
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
}

impl SubscriberFilter {
    pub fn from_json(text: &str) -> crate::error::Result<SubscriberFilter> {
        if !crate::event::is_json_object(text) {
            return Err(crate::error::EventBusError::InvalidEvent(
                "subscribe options must be an object".into(),
            ));
        }
        serde_json::from_str(text).map_err(|e| {
            crate::error::EventBusError::InvalidEvent(format!(
                "subscribe options: {}",
                crate::event::describe_json_error(&e)
            ))
        })
    }

    fn accepts(&self, event: &SharedEvent) -> bool {
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
}

pub struct Router {
    routes: RwLock<Vec<Route>>,
    tasks: Mutex<HashMap<u64, JoinHandle<()>>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    /// Events queued for or being handled by subscribers.
    pending: Arc<InFlight>,
    /// Delivery tasks run here, also when `subscribe` is called from outside the runtime (napi).
    runtime: tokio::runtime::Handle,
}

/// Handle to one subscription. Dropping it does not unsubscribe (like an EventEmitter listener).
#[derive(Clone)]
pub struct Subscription {
    id: u64,
    cancelled: Arc<AtomicBool>,
    router: Weak<Router>,
}

impl Subscription {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Stops delivery at once: queued events are dropped, a batch in flight stops at the
    /// next handler call (the sink checks `is_active`).
    pub fn unsubscribe(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if let Some(router) = self.router.upgrade() {
            router.remove(self.id);
        }
    }

    pub fn is_active(&self) -> bool {
        !self.cancelled.load(Ordering::SeqCst)
    }

    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
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
            runtime: tokio::runtime::Handle::current(),
        })
    }

    pub fn subscribe(
        self: &Arc<Self>,
        patterns: Vec<Pattern>,
        filter: SubscriberFilter,
        sink: Arc<dyn Sink>,
        span: tracing::Span,
    ) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let cancelled = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::unbounded_channel();
        let task = self.runtime.spawn(
            deliver_loop(
                rx,
                sink,
                cancelled.clone(),
                self.metrics.clone(),
                self.pending.clone(),
            )
            .instrument(span),
        );
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Route {
                id,
                patterns,
                filter,
                queue: tx,
            });
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

    /// Queues committed events (in position order) for every matching subscriber.
    pub fn dispatch(&self, events: &[SharedEvent]) {
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
                    if route.queue.send(event.clone()).is_err() {
                        // The subscriber is going away.
                        self.pending.done(1);
                    }
                }
            }
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.get()
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

async fn deliver_loop(
    mut rx: mpsc::UnboundedReceiver<SharedEvent>,
    sink: Arc<dyn Sink>,
    cancelled: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    pending: Arc<InFlight>,
) {
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if cancelled.load(Ordering::SeqCst) {
            // Unsubscribed: what is still queued will never be handled.
            rx.close();
            while rx.try_recv().is_ok() {
                pending.done(1);
            }
            pending.done(batch.len());
            break;
        }
        let failures = sink.deliver(&batch).await;
        Metrics::add(&metrics.delivery_batches, 1);
        Metrics::add(
            &metrics.delivered,
            (batch.len() - failures.len().min(batch.len())) as u64,
        );
        Metrics::add(&metrics.handler_errors, failures.len() as u64);
        for failure in failures {
            warn!(position = failure.position, error = %failure.message, "event handler failed");
        }
        pending.done(batch.len());
        batch.clear();
    }
}
