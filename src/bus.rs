//! The bus: publish through the middleware chain into the batcher, subscribe through the router,
//! read from the store, and close in order (publishes, writes, deliveries, store).

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;
use tracing::{debug_span, info_span, Instrument, Span};

use crate::batcher::{Arrival, Batcher};
use crate::config::Config;
use crate::consumer_group::{GroupOptions, Members};
use crate::error::{EventBusError, Result};
use crate::event::{Event, SharedEvent};
use crate::log_forward::{self, LogSink, Registration};
use crate::metrics::{refresh, Metrics};
use crate::middleware::security::scoped_tenant;
use crate::middleware::{Middleware, MiddlewareChain, MiddlewareId, Scope};
use crate::pattern::Pattern;
use crate::query::{EventFilter, Page};
use crate::retention::Retention;
use crate::router::{Consumer, Replay, Router, Sink, StartFrom, SubscriberFilter, Subscription};
use crate::store::groups::{DeadLetter, DeadLetterStatus};
use crate::store::{self, Store, StoreOptions};
use crate::tailer::Tailer;
use crate::transport::metrics_http::MetricsServer;
use crate::transport::sse::server::{self as sse_server, ListenOptions, SseServer};
use crate::transport::sse::{Authorizer, Filter, Grant, Selection, Sse, StreamOptions};
use crate::transport::webhook::{dispatcher, Webhooks};

mod admitted;
mod observe;
mod webhook_workers;

pub use admitted::Admitted;
use admitted::Gate;

/// What a publish resolved with.
#[derive(Debug, Clone)]
pub enum Published {
    /// Committed; or already stored with the same content, and then not delivered again.
    Stored(SharedEvent),
    /// The bus is disabled (`enabled: false`): validated, but neither stored nor delivered.
    NotStored(Event),
}

impl Published {
    /// The event's wire form (with `position: null` when not stored).
    pub fn json(&self) -> Cow<'_, str> {
        match self {
            Published::Stored(e) => Cow::Borrowed(e.json()),
            Published::NotStored(e) => Cow::Owned(e.to_json(None)),
        }
    }

    /// The event: as stored, or as accepted when not stored.
    pub fn event(&self) -> &Event {
        match self {
            Published::Stored(e) => &e.event,
            Published::NotStored(e) => e,
        }
    }

    /// Where it was stored, if it was.
    pub fn position(&self) -> Option<u64> {
        match self {
            Published::Stored(e) => Some(e.position),
            Published::NotStored(_) => None,
        }
    }
}

struct Inner {
    config: Config,
    span: Span,
    chain: MiddlewareChain,
    store: Arc<dyn Store>,
    router: Arc<Router>,
    tailer: Arc<Tailer>,
    /// Listens for other instances' commits (PostgreSQL LISTEN), when the store has a doorbell.
    doorbell: Mutex<Option<tokio::task::JoinHandle<()>>>,
    batcher: Batcher,
    metrics: Arc<Metrics>,
    gate: Gate,
    closing: OnceCell<()>,
    retention: Mutex<Option<Retention>>,
    /// Reads the store's figures for the metrics.
    metrics_refresh: tokio::task::JoinHandle<()>,
    /// `/metrics` over HTTP, when `metrics.listen` is set.
    metrics_server: Mutex<Option<MetricsServer>>,
    /// Consumer-group members of this instance, stopped (and their partitions handed back) on close.
    members: Members,
    /// Where background tasks run, also when called from outside the runtime (napi).
    runtime: tokio::runtime::Handle,
    webhooks: Webhooks,
    webhook_workers: OnceCell<dispatcher::Workers>,
    sse: Arc<Sse>,
    sse_servers: Mutex<Vec<Arc<SseServer>>>,
    log_registration: Mutex<Option<Registration>>,
}

/// One bus: a handle to its store, router and transports. Clones share the bus; `close` closes
/// it for all of them.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

impl EventBus {
    /// Opens a bus. Must be called within a tokio runtime (its tasks are spawned there).
    pub async fn open(config: Config, log_sink: Option<Arc<dyn LogSink>>) -> Result<EventBus> {
        let bus_id = log_forward::next_bus_id();
        let log_registration =
            log_sink.map(|sink| log_forward::register(bus_id, config.log_level, sink));
        // The root span is at error level so it is never filtered out: records below it are
        // attributed to this bus's logger.
        let span = tracing::error_span!("event_bus", bus = bus_id);
        let chain = MiddlewareChain::new(&config)?;
        #[cfg(feature = "otlp")]
        if let Some(otlp) = &config.tracing.otlp {
            crate::otlp::install(otlp)?;
        }
        let store_options = StoreOptions {
            pool_size: config.store.pool_size,
            acquire_timeout: config.store.acquire_timeout,
        };
        let store = store::open(&config.store_url, &store_options).await?;
        let metrics = Arc::new(Metrics::new(config.metrics.enabled));
        let router = Router::new(metrics.clone());
        let tailer = Arc::new(
            Tailer::start(
                store.clone(),
                router.clone(),
                config.delivery.poll_interval,
                span.clone(),
            )
            .await?,
        );
        let doorbell = store.doorbell(Box::new(tailer.waker()));
        let batcher = Batcher::spawn(
            store.clone(),
            tailer.clone(),
            metrics.clone(),
            config.batch.clone(),
            span.clone(),
        );
        let retention = Retention::spawn(store.clone(), config.retention.clone(), span.clone());
        let metrics_refresh = refresh::spawn(
            store.clone(),
            metrics.clone(),
            config.metrics.refresh_interval,
            span.clone(),
        );
        let webhooks = Webhooks::new(store.clone(), config.webhook.clone());
        let sse = Arc::new(Sse::new(
            store.clone(),
            router.clone(),
            metrics.clone(),
            config.sse.clone(),
            span.clone(),
        ));
        let members = Members::new(
            store.clone(),
            router.clone(),
            metrics.clone(),
            config.delivery.poll_interval,
            tokio::runtime::Handle::current(),
        );
        span.in_scope(|| tracing::info!(store = %store::redact_url(&config.store_url), enabled = config.enabled, "event bus opened"));
        let bus = EventBus {
            inner: Arc::new(Inner {
                config,
                span,
                chain,
                store,
                router,
                tailer,
                doorbell: Mutex::new(doorbell),
                batcher,
                metrics,
                gate: Gate::default(),
                closing: OnceCell::new(),
                retention: Mutex::new(retention),
                metrics_refresh,
                metrics_server: Mutex::new(None),
                members,
                runtime: tokio::runtime::Handle::current(),
                webhooks,
                webhook_workers: OnceCell::new(),
                sse,
                sse_servers: Mutex::new(Vec::new()),
                log_registration: Mutex::new(log_registration),
            }),
        };
        if bus.inner.config.webhook.workers {
            bus.start_webhook_workers()?;
        }
        if let Err(e) = bus.serve_metrics().await {
            bus.close().await;
            return Err(e);
        }
        Ok(bus)
    }

    /// Starts an SSE server on the bus's runtime; `authorize` decides each connection (none:
    /// every connection sees every event its query selects).
    pub(crate) async fn sse_listen(
        &self,
        options: ListenOptions,
        authorizer: Option<Arc<dyn Authorizer>>,
    ) -> Result<Arc<SseServer>> {
        let _admitted = self.admit_read()?;
        let server =
            Arc::new(sse_server::listen(self.inner.sse.clone(), options, authorizer).await?);
        self.inner
            .sse_servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(server.clone());
        Ok(server)
    }

    /// A stream of events for NestJS `@Sse()`: replay after `lastEventId`, then live; scoped to
    /// the handle's tenant.
    pub(crate) async fn sse_stream(
        &self,
        options: StreamOptions,
        scope: &Scope,
    ) -> Result<crate::transport::sse::Stream> {
        let _admitted = self.admit_read()?;
        let last = options
            .last_event_id
            .as_ref()
            .map(|l| l.position())
            .transpose()?;
        let selection = Selection {
            types: options.types,
            project_id: options.project_id,
            tenant_id: scoped_tenant(scope, options.tenant_id)?,
        };
        let grant = Grant {
            tenant_id: scope.tenant_id.clone(),
            ..Grant::default()
        };
        self.inner
            .sse
            .open(Filter::new(selection, grant)?, last, None)
            .await
    }

    /// Webhook endpoints and deliveries (CLOSED once the bus is closing).
    pub(crate) fn webhooks(&self) -> Result<&Webhooks> {
        self.inner.gate.check_open()?;
        Ok(&self.inner.webhooks)
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The store behind this bus (the same one its publishes append to).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// At debug level: one per publish is made for every event of a burst, and at info level it
    /// would cost more than storing the event in memory does. Named and attributed as the
    /// OpenTelemetry messaging conventions say (`messaging.*`), with the first event's type as
    /// the destination and its W3C `traceparent`, if it carries one.
    fn publish_span(&self, what: &'static str, events: &[Event]) -> Span {
        let span = debug_span!(
            parent: &self.inner.span,
            "publish",
            kind = what,
            count = events.len(),
            messaging.system = crate::trace_context::MESSAGING_SYSTEM,
            messaging.operation.type = "send",
            messaging.destination.name = tracing::field::Empty,
            messaging.message.id = tracing::field::Empty,
            trace_parent = tracing::field::Empty,
            otel.name = tracing::field::Empty,
            otel.kind = "producer",
        );
        if !span.is_disabled() {
            if let Some(first) = events.first() {
                span.record("messaging.destination.name", first.event_type.as_str());
                if events.len() == 1 {
                    span.record("messaging.message.id", first.id.to_string().as_str());
                }
                if let Some(trace) = crate::trace_context::TraceContext::of(first) {
                    span.record("trace_parent", trace.traceparent.as_str());
                }
                crate::trace_context::export_as(
                    &span,
                    "publish",
                    first.event_type.as_str(),
                    Some(first),
                );
            }
        }
        self.child_span(span)
    }

    /// A span under the bus's root, or the root itself when filtered out, so records emitted
    /// inside are still attributed to this bus's logger.
    fn child_span(&self, span: Span) -> Span {
        if span.is_disabled() {
            self.inner.span.clone()
        } else {
            span
        }
    }

    /// Runs `task` on the bus's runtime (callable from outside it, e.g. from napi).
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.runtime.spawn(task);
    }

    /// Announces a caller being answered who will probably publish again at once; see
    /// [`Batcher::expect_return`].
    pub(crate) fn expect_return(&self) -> Option<Arrival> {
        self.inner.batcher.expect_return()
    }

    /// Admits an operation now (fails CLOSED once `close` has begun); see [`Admitted`].
    pub fn admit(&self) -> Result<Admitted> {
        self.inner.gate.in_flight.add(1);
        let admitted = Admitted {
            bus: self.clone(),
            arrival: Some(self.inner.batcher.expect_arrival()),
            since: std::time::Instant::now(),
        };
        self.inner.gate.check_open()?;
        Ok(admitted)
    }

    /// Admits an operation that publishes nothing (the writer does not wait for it).
    fn admit_read(&self) -> Result<Admitted> {
        let mut admitted = self.admit()?;
        admitted.arrival.take();
        Ok(admitted)
    }

    /// Validates, stores and routes one event; resolves after it is committed.
    pub async fn publish(&self, event: Event, scope: &Scope) -> Result<Published> {
        self.admit()?.publish(event, scope).await
    }

    /// Publishes several events atomically: all are stored, or none (the error names the index).
    pub async fn publish_many(&self, events: Vec<Event>, scope: &Scope) -> Result<Vec<Published>> {
        self.admit()?.publish_many(events, scope).await
    }

    /// Runs the middleware chain on each event; `indexed` names the failing event's index.
    async fn accept(&self, events: Vec<Event>, scope: &Scope, indexed: bool) -> Result<Vec<Event>> {
        let inner = &self.inner;
        let result: Result<Vec<Event>> = async {
            let mut accepted = Vec::with_capacity(events.len());
            for (i, event) in events.into_iter().enumerate() {
                let checked = inner.chain.run(event, scope).await;
                accepted.push(if indexed {
                    checked.map_err(|e| e.at(&format!("events[{i}]")))?
                } else {
                    checked?
                });
            }
            Ok(accepted)
        }
        .await;
        result.inspect_err(|e| {
            Metrics::add(&inner.metrics.rejected, 1);
            tracing::debug!(code = e.code(), error = %e, "publish rejected");
        })
    }

    /// Delivers matching events committed from now on to `sink`, in position order.
    pub fn subscribe(
        &self,
        patterns: &[String],
        filter: SubscriberFilter,
        scope: &Scope,
        sink: Arc<dyn Sink>,
    ) -> Result<Subscription> {
        self.inner.gate.check_open()?;
        // The subscription's label in the metrics: what it listens to.
        let consumer = Consumer::Handlers(patterns.join(","));
        let patterns = Pattern::parse_all(patterns)?;
        let filter = SubscriberFilter {
            tenant_id: scoped_tenant(scope, filter.tenant_id)?,
            ..filter
        };
        let span = self.child_span(info_span!(parent: &self.inner.span, "subscriber"));
        let replay = filter
            .from
            .and_then(|from| from.replay_after())
            .map(|after| Replay {
                store: self.inner.store.clone(),
                after,
            });
        Ok(self
            .inner
            .router
            .subscribe(patterns, filter, sink, consumer, replay, span))
    }

    /// Joins consumer group `group.name`: with the other members of the group (in this and other
    /// instances) handles every matching event once, in order per partition, at least once.
    /// `sink` must stop at its first failing event in a batch (the rest is delivered again).
    pub fn subscribe_group(
        &self,
        patterns: &[String],
        filter: SubscriberFilter,
        group: GroupOptions,
        scope: &Scope,
        sink: Arc<dyn Sink>,
    ) -> Result<Subscription> {
        let inner = &self.inner;
        inner.gate.check_open()?;
        let patterns = Pattern::parse_all(patterns)?;
        let filter = SubscriberFilter {
            tenant_id: scoped_tenant(scope, filter.tenant_id)?,
            from: None,
            ..filter
        };
        // "Now" is when subscribe was called, not when the member task first reads the log: an
        // event published right after subscribing is the new group's.
        let group = match group.start {
            StartFrom::Now => GroupOptions {
                start: StartFrom::After(inner.tailer.known_head()),
                ..group
            },
            _ => group,
        };
        let span =
            self.child_span(info_span!(parent: &inner.span, "consumer_group", group = %group.name));
        Ok(inner.members.join(patterns, filter, group, sink, span))
    }

    /// Dead letters, newest first, of one group or all.
    pub async fn dead_letters(
        &self,
        group: Option<&str>,
        status: Option<DeadLetterStatus>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let _admitted = self.admit_read()?;
        self.inner
            .store
            .groups()
            .dead_letters(group, status, limit.clamp(1, 1000))
            .await
    }

    /// Marks a dead letter for re-delivery by a member of its group (NOT_FOUND if unknown).
    pub async fn retry_dead_letter(&self, id: u64) -> Result<()> {
        let _admitted = self.admit_read()?;
        if self.inner.store.groups().retry_dead_letter(id).await? {
            Ok(())
        } else {
            Err(EventBusError::NotFound(format!(
                "dead letter {id} does not exist"
            )))
        }
    }

    /// Adds a user middleware after the built-ins (and after earlier user middleware).
    pub fn use_middleware(&self, middleware: Arc<dyn Middleware>) -> Result<MiddlewareId> {
        self.inner.gate.check_open()?;
        Ok(self.inner.chain.add(middleware))
    }

    /// Removes a user middleware; false if `id` is not registered (any more).
    pub fn remove_middleware(&self, id: MiddlewareId) -> bool {
        self.inner.chain.remove(id)
    }

    /// Moves events older than `older_than` to the archive, in bounded batches; returns how many
    /// moved. Safe to run concurrently and to re-run after a crash.
    pub async fn archive(&self, older_than: DateTime<Utc>) -> Result<u64> {
        self.admit()?.archive(older_than, None).await
    }

    /// Like [`EventBus::archive`], moving at most `limit` events (the oldest first): a caller
    /// that wants to show progress archives in steps until fewer than `limit` move.
    pub async fn archive_at_most(&self, older_than: DateTime<Utc>, limit: u64) -> Result<u64> {
        self.admit()?.archive(older_than, Some(limit)).await
    }

    /// A page of stored events matching `filter`, within the scope's tenant.
    pub async fn get_events(&self, filter: EventFilter, scope: &Scope) -> Result<Page> {
        self.admit()?.get_events(filter, scope).await
    }

    /// Resolves once every event routed so far has been handled by its subscribers.
    pub async fn deliveries_idle(&self) {
        self.inner.router.idle().await;
    }

    pub(crate) fn pending_deliveries(&self) -> usize {
        self.inner.router.pending()
    }

    /// Calls `watcher` (from any thread) whenever [`EventBus::pending_deliveries`] goes from zero
    /// to more or back, so a host can keep its process alive while committed events wait for their
    /// handlers. It reads the count itself: racing calls may arrive out of order. Set once.
    pub(crate) fn watch_pending_deliveries(
        &self,
        watcher: impl Fn() + Send + Sync + 'static,
    ) -> bool {
        self.inner.router.watch_pending(Box::new(watcher))
    }

    /// Whether `close` has begun.
    pub fn is_closed(&self) -> bool {
        self.inner.gate.check_open().is_err()
    }

    /// Waits for operations in flight (publishes, queries), stores and routes them, lets every subscriber finish its
    /// queue, closes the store and releases the logger. Idempotent; later calls fail CLOSED.
    pub async fn close(&self) {
        let inner = &self.inner;
        inner
            .closing
            .get_or_init(|| {
                async {
                    inner.gate.close().await;
                    inner.metrics_refresh.abort();
                    if let Some(server) = lock(&inner.metrics_server).take() {
                        server.stop();
                    }
                    let retention = inner
                        .retention
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take();
                    if let Some(retention) = retention {
                        retention.stop().await;
                    }
                    inner.members.stop().await;
                    if let Some(workers) = inner.webhook_workers.get() {
                        workers.stop().await;
                    }
                    let servers: Vec<Arc<SseServer>> = inner
                        .sse_servers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .drain(..)
                        .collect();
                    for server in servers {
                        server.close().await;
                    }
                    inner.sse.stop();
                    inner.batcher.shutdown().await;
                    if let Some(doorbell) = inner
                        .doorbell
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take()
                    {
                        doorbell.abort();
                    }
                    inner.tailer.stop().await;
                    inner.router.drain().await;
                    inner.store.close().await;
                    // Handlers have finished, so their spans have ended: send them before the
                    // process may exit.
                    #[cfg(feature = "otlp")]
                    if inner.config.tracing.otlp.is_some() {
                        crate::otlp::flush().await;
                    }
                    tracing::info!("event bus closed");
                    inner
                        .log_registration
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take();
                }
                .instrument(inner.span.clone())
            })
            .await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
