//! What the bus measures about itself: counters, histograms and gauges in one Prometheus registry
//! (`prometheus-client`), rendered as Prometheus text (`EventBus::metrics_text`) and as a JSON snapshot
//! (`EventBus::metrics`). Every name is prefixed `situs_event_bus_`, in base units, counters end
//! in `_total`, and labels that come from user data (types, endpoints, consumers) are capped
//! (`labels::LabelCap`).
//!
//! Recording is cheap on the hot path: per-type counts are added once per commit, not per event;
//! gauges that describe other parts (queues, the pool, memory) are set when metrics are read.

pub(crate) mod labels;
mod process;
pub(crate) mod refresh;
mod snapshot;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::event::SharedEvent;
use labels::{
    AttemptLabels, CodeLabel, ConsumerLabel, EndpointLabel, GroupLabel, LabelCap, SinkLabel,
    SourceLabel, StateLabel, StatusLabel, TypeLabel,
};
pub use snapshot::{GroupLag, MetricsSnapshot, Totals};

/// Distinct event types labelled before the rest count as `other`.
pub const TYPE_LABELS: usize = 200;
/// Distinct webhook endpoints labelled before the rest count as `other`.
pub const ENDPOINT_LABELS: usize = 100;
/// Distinct consumers (group names, subscriptions' patterns) labelled likewise.
pub const CONSUMER_LABELS: usize = 100;

/// A webhook attempt's outcome, as labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptOutcome {
    /// A 2xx.
    Success,
    /// Failed; another attempt is due.
    Retry,
    /// Failed and given up on (the last attempt, or 410 Gone).
    Dead,
}

impl AttemptOutcome {
    fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Success => "success",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Dead => "dead",
        }
    }
}

/// Where delivered events went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SinkKind {
    Subscriber,
    Group,
    Sse,
    Webhook,
}

impl SinkKind {
    fn as_str(self) -> &'static str {
        match self {
            SinkKind::Subscriber => "subscriber",
            SinkKind::Group => "group",
            SinkKind::Sse => "sse",
            SinkKind::Webhook => "webhook",
        }
    }
}

/// Gauges describing the rest of the bus, read when metrics are read.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Depths {
    /// Publish requests waiting for the writer.
    pub batcher: u64,
    /// Events routed to live subscribers and not yet handled.
    pub subscribers: u64,
    /// The same per handler consumer label.
    pub per_consumer: Vec<(String, u64)>,
    /// Live subscriptions.
    pub subscriptions: u64,
    /// Bytes of events queued in memory for subscribers (payload, metadata and type).
    pub buffered_bytes: u64,
    /// The store's connection pool (None for the memory store).
    pub pool: Option<crate::store::PoolStats>,
}

/// Gauges read from the store by the bus's periodic refresh (they cost a query).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StoreDepths {
    pub webhook_pending: u64,
    pub webhook_retrying: u64,
    pub webhook_dead: u64,
    pub groups: Vec<GroupLag>,
}

/// The bus's instruments and their registry.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Histograms and labelled counts are kept (totals always are).
    enabled: bool,
    registry: Registry,
    types: LabelCap,
    endpoints: LabelCap,
    consumers: LabelCap,

    pub published: Counter,
    pub duplicates: Counter,
    pub rejected: Counter,
    pub delivered: Counter,
    pub handler_errors: Counter,
    pub batches: Counter,
    pub delivery_batches: Counter,
    pub group_retries: Counter,
    pub dead_lettered: Counter,
    pub webhooks_delivered: Counter,
    pub webhook_failures: Counter,
    pub webhooks_dead: Counter,
    /// Open SSE streams.
    pub sse_connections: Gauge,
    pub sse_dropped: Counter,
    pub sse_resets: Counter,

    published_by_type: Family<TypeLabel, Counter>,
    publish_errors: Family<CodeLabel, Counter>,
    publish_errors_total: Counter,
    publish_seconds: Observed,
    commit_events: Observed,
    commit_seconds: Observed,
    handler_seconds: Family<ConsumerLabel, Histogram>,
    handler_seconds_all: Observed,
    handler_errors_by: Family<ConsumerLabel, Counter>,
    delivered_by_sink: Family<SinkLabel, Counter>,
    webhook_attempts: Family<AttemptLabels, Counter>,
    webhook_attempt_seconds: Family<EndpointLabel, Histogram>,
    webhook_success_ratio: Gauge<f64, AtomicU64>,
    sse_replays: Family<SourceLabel, Counter>,

    queue_batcher: Gauge,
    queue_subscribers: Gauge,
    queue_by_consumer: Family<ConsumerLabel, Gauge>,
    subscriptions: Gauge,
    outbox: Family<StatusLabel, Gauge>,
    group_lag_events: Family<GroupLabel, Gauge>,
    group_lag_seconds: Family<GroupLabel, Gauge<f64, AtomicU64>>,
    pool: Family<StateLabel, Gauge>,
    pool_waits: Counter,
    rss_bytes: Gauge,
    buffered_bytes: Gauge,
    store_depths: std::sync::Mutex<StoreDepths>,
}

/// A histogram that also keeps its count and sum for the JSON snapshot (the crate reads them
/// back only in its own tests).
#[derive(Debug)]
struct Observed {
    histogram: Histogram,
    count: AtomicU64,
    /// The sum's f64 bits.
    sum: AtomicU64,
}

impl Observed {
    fn new(histogram: Histogram) -> Observed {
        Observed {
            histogram,
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    fn observe(&self, v: f64) {
        self.histogram.observe(v);
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    fn totals(&self) -> Totals {
        Totals {
            count: self.count.load(Ordering::Relaxed),
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
        }
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~6.5 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(true)
    }
}

impl Metrics {
    /// `enabled`: keep histograms and labelled counts too (see `metrics.enabled`).
    pub fn new(enabled: bool) -> Metrics {
        let mut registry = Registry::with_prefix("situs_event_bus");
        let metrics = Metrics {
            enabled,
            types: LabelCap::new(TYPE_LABELS),
            endpoints: LabelCap::new(ENDPOINT_LABELS),
            consumers: LabelCap::new(CONSUMER_LABELS),
            published: Counter::default(),
            duplicates: Counter::default(),
            rejected: Counter::default(),
            delivered: Counter::default(),
            handler_errors: Counter::default(),
            batches: Counter::default(),
            delivery_batches: Counter::default(),
            group_retries: Counter::default(),
            dead_lettered: Counter::default(),
            webhooks_delivered: Counter::default(),
            webhook_failures: Counter::default(),
            webhooks_dead: Counter::default(),
            sse_connections: Gauge::default(),
            sse_dropped: Counter::default(),
            sse_resets: Counter::default(),
            published_by_type: Family::default(),
            publish_errors: Family::default(),
            publish_errors_total: Counter::default(),
            publish_seconds: Observed::new(latency_histogram()),
            commit_events: Observed::new(Histogram::new(exponential_buckets(1.0, 2.0, 12))),
            commit_seconds: Observed::new(latency_histogram()),
            handler_seconds: Family::new_with_constructor(latency_histogram),
            handler_seconds_all: Observed::new(latency_histogram()),
            handler_errors_by: Family::default(),
            delivered_by_sink: Family::default(),
            webhook_attempts: Family::default(),
            webhook_attempt_seconds: Family::new_with_constructor(latency_histogram),
            webhook_success_ratio: Gauge::default(),
            sse_replays: Family::default(),
            queue_batcher: Gauge::default(),
            queue_subscribers: Gauge::default(),
            queue_by_consumer: Family::default(),
            subscriptions: Gauge::default(),
            outbox: Family::default(),
            group_lag_events: Family::default(),
            group_lag_seconds: Family::default(),
            pool: Family::default(),
            pool_waits: Counter::default(),
            rss_bytes: Gauge::default(),
            buffered_bytes: Gauge::default(),
            store_depths: Default::default(),
            registry: Registry::default(),
        };
        metrics.register(&mut registry);
        Metrics {
            registry,
            ..metrics
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "events_published",
            "Events committed to the store, by type",
            self.published_by_type.clone(),
        );
        r.register(
            "events_duplicate",
            "Publishes of a stored id with the same content (answered, not delivered again)",
            self.duplicates.clone(),
        );
        r.register(
            "publish_errors",
            "Publishes that failed, by error code",
            self.publish_errors.clone(),
        );
        r.register_with_unit(
            "publish_duration",
            "Time from a publish being admitted to its answer (commit included)",
            Unit::Seconds,
            self.publish_seconds.histogram.clone(),
        );
        r.register("commits", "Group commits performed", self.batches.clone());
        r.register(
            "commit_events",
            "Events per group commit",
            self.commit_events.histogram.clone(),
        );
        r.register_with_unit(
            "commit_duration",
            "Time one group commit took in the store",
            Unit::Seconds,
            self.commit_seconds.histogram.clone(),
        );
        r.register_with_unit(
            "handler_duration",
            "Time handlers took per event, by consumer (group name, or a subscription's patterns)",
            Unit::Seconds,
            self.handler_seconds.clone(),
        );
        r.register(
            "handler_errors",
            "Handler calls that threw or rejected, by consumer",
            self.handler_errors_by.clone(),
        );
        r.register(
            "events_delivered",
            "Events handed to a sink, by sink",
            self.delivered_by_sink.clone(),
        );
        r.register(
            "group_retries",
            "Consumer-group handler calls that repeated a failed one",
            self.group_retries.clone(),
        );
        r.register(
            "dead_lettered",
            "Events consumer groups gave up on",
            self.dead_lettered.clone(),
        );
        r.register(
            "webhook_attempts",
            "Webhook delivery attempts, by endpoint and outcome",
            self.webhook_attempts.clone(),
        );
        r.register_with_unit(
            "webhook_attempt_duration",
            "Time of one webhook request, by endpoint",
            Unit::Seconds,
            self.webhook_attempt_seconds.clone(),
        );
        r.register(
            "webhook_success_ratio",
            "Share of webhook attempts that succeeded since the bus opened",
            self.webhook_success_ratio.clone(),
        );
        r.register(
            "sse_connections",
            "SSE streams open now",
            self.sse_connections.clone(),
        );
        r.register(
            "sse_dropped",
            "SSE streams closed because the client fell too far behind",
            self.sse_dropped.clone(),
        );
        r.register(
            "sse_resets",
            "SSE streams that started with a reset (last id older than the log)",
            self.sse_resets.clone(),
        );
        r.register(
            "sse_replays",
            "SSE reconnects replayed, by source (ring or store)",
            self.sse_replays.clone(),
        );
        r.register(
            "batcher_queue_depth",
            "Publish requests waiting for the writer",
            self.queue_batcher.clone(),
        );
        r.register(
            "subscriber_queue_depth",
            "Events routed to live subscribers, not yet handled",
            self.queue_subscribers.clone(),
        );
        r.register(
            "consumer_queue_depth",
            "Events routed to a consumer's subscriptions, not yet handled, by consumer",
            self.queue_by_consumer.clone(),
        );
        r.register(
            "subscriptions",
            "Live subscriptions",
            self.subscriptions.clone(),
        );
        r.register(
            "webhook_outbox_deliveries",
            "Webhook deliveries in the outbox, by status",
            self.outbox.clone(),
        );
        r.register(
            "group_lag_events",
            "Events a consumer group has yet to handle",
            self.group_lag_events.clone(),
        );
        r.register_with_unit(
            "group_lag",
            "Age of the oldest event a consumer group has yet to handle",
            Unit::Seconds,
            self.group_lag_seconds.clone(),
        );
        r.register(
            "store_pool_connections",
            "Store connections, by state",
            self.pool.clone(),
        );
        r.register(
            "store_pool_waits",
            "Store connection acquires that found no idle connection in a full pool",
            self.pool_waits.clone(),
        );
        r.register_with_unit(
            "process_resident_memory",
            "Resident memory of the process",
            Unit::Bytes,
            self.rss_bytes.clone(),
        );
        r.register_with_unit(
            "buffered",
            "Bytes of events queued in memory for subscribers (payload, metadata and type)",
            Unit::Bytes,
            self.buffered_bytes.clone(),
        );
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    /// A group commit of `appended` events, of which `fresh` were new, took `took`.
    pub fn committed(&self, fresh: &[SharedEvent], appended: usize, took: Duration) {
        self.batches.inc();
        self.published.inc_by(fresh.len() as u64);
        self.duplicates
            .inc_by(appended.saturating_sub(fresh.len()) as u64);
        if !self.enabled {
            return;
        }
        self.commit_events.observe(appended as f64);
        self.commit_seconds.observe(took.as_secs_f64());
        // Counted per type once per commit: a burst of one type costs one label lookup.
        let mut by_type: HashMap<&str, u64> = HashMap::new();
        for e in fresh {
            *by_type.entry(e.event.event_type.as_str()).or_default() += 1;
        }
        for (event_type, n) in by_type {
            let label = TypeLabel {
                r#type: self.types.label(event_type),
            };
            self.published_by_type.get_or_create(&label).inc_by(n);
        }
    }

    /// A publish was answered `took` after it was admitted, with `error` (a code) if it failed.
    pub fn answered(&self, took: Duration, error: Option<&str>) {
        if self.enabled {
            self.publish_seconds.observe(took.as_secs_f64());
        }
        if let Some(code) = error {
            self.publish_errors_total.inc();
            self.publish_errors
                .get_or_create(&CodeLabel {
                    code: code.to_string(),
                })
                .inc();
        }
    }

    /// `n` events went to a sink.
    pub fn delivered_to(&self, sink: SinkKind, n: u64) {
        if n == 0 || !self.enabled {
            return;
        }
        self.delivered_by_sink
            .get_or_create(&SinkLabel {
                sink: sink.as_str(),
            })
            .inc_by(n);
    }

    /// The label of a consumer (a group's name, or a subscription's patterns), capped.
    pub fn consumer(&self, name: &str) -> String {
        self.consumers.label(name)
    }

    /// A consumer's handlers took `seconds` for each of their events; `failed` of them threw.
    pub fn handled(&self, consumer: &str, seconds: &[f64], failed: u64) {
        if self.enabled && !seconds.is_empty() {
            let family = self.handler_seconds.get_or_create(&ConsumerLabel {
                consumer: consumer.to_string(),
            });
            for &s in seconds {
                family.observe(s);
                self.handler_seconds_all.observe(s);
            }
        }
        if failed > 0 {
            self.handler_errors.inc_by(failed);
            self.handler_errors_by
                .get_or_create(&ConsumerLabel {
                    consumer: consumer.to_string(),
                })
                .inc_by(failed);
        }
    }

    /// One webhook request to `endpoint` (its id) took `took` and ended so.
    pub fn webhook_attempt(&self, endpoint: &str, outcome: AttemptOutcome, took: Duration) {
        match outcome {
            AttemptOutcome::Success => {
                self.webhooks_delivered.inc();
                self.delivered_to(SinkKind::Webhook, 1);
            }
            AttemptOutcome::Retry => {
                self.webhook_failures.inc();
            }
            AttemptOutcome::Dead => {
                self.webhook_failures.inc();
                self.webhooks_dead.inc();
            }
        }
        let endpoint = self.endpoints.label(endpoint);
        self.webhook_attempts
            .get_or_create(&AttemptLabels {
                endpoint: endpoint.clone(),
                outcome: outcome.as_str(),
            })
            .inc();
        self.webhook_attempt_seconds
            .get_or_create(&EndpointLabel { endpoint })
            .observe(took.as_secs_f64());
        let attempts = self.webhooks_delivered.get() + self.webhook_failures.get();
        if attempts > 0 {
            self.webhook_success_ratio
                .set(self.webhooks_delivered.get() as f64 / attempts as f64);
        }
    }

    /// An SSE reconnect was replayed from the ring (`true`) or the store.
    pub fn sse_replayed(&self, from_ring: bool) {
        let source = if from_ring { "ring" } else { "store" };
        self.sse_replays
            .get_or_create(&SourceLabel { source })
            .inc();
    }

    /// The store's figures from the latest refresh (see `bus`'s metrics refresh).
    pub fn set_store_depths(&self, depths: StoreDepths) {
        for (status, n) in [
            ("pending", depths.webhook_pending),
            ("retrying", depths.webhook_retrying),
            ("dead", depths.webhook_dead),
        ] {
            self.outbox
                .get_or_create(&StatusLabel { status })
                .set(n as i64);
        }
        // Groups that went away stop being reported.
        self.group_lag_events.clear();
        self.group_lag_seconds.clear();
        for lag in &depths.groups {
            let group = GroupLabel {
                group: self.consumers.label(&lag.group),
            };
            self.group_lag_events
                .get_or_create(&group)
                .set(lag.events as i64);
            self.group_lag_seconds
                .get_or_create(&group)
                .set(lag.seconds);
        }
        *self.store_depths.lock().unwrap_or_else(|p| p.into_inner()) = depths;
    }

    fn set_depths(&self, depths: &Depths) -> u64 {
        self.queue_batcher.set(depths.batcher as i64);
        self.queue_subscribers.set(depths.subscribers as i64);
        // Subscriptions that went away stop being reported.
        self.queue_by_consumer.clear();
        for (consumer, n) in &depths.per_consumer {
            self.queue_by_consumer
                .get_or_create(&ConsumerLabel {
                    consumer: consumer.clone(),
                })
                .set(*n as i64);
        }
        self.subscriptions.set(depths.subscriptions as i64);
        self.buffered_bytes.set(depths.buffered_bytes as i64);
        if let Some(pool) = depths.pool {
            self.pool
                .get_or_create(&StateLabel { state: "in_use" })
                .set(pool.in_use as i64);
            self.pool
                .get_or_create(&StateLabel { state: "idle" })
                .set(pool.idle as i64);
            // The store counts; the counter catches up with it when metrics are read.
            let seen = self.pool_waits.get();
            self.pool_waits.inc_by(pool.waits.saturating_sub(seen));
        }
        let rss = process::resident_bytes().unwrap_or(0);
        self.rss_bytes.set(rss as i64);
        rss
    }

    /// Prometheus text exposition (format 0.0.4) of everything, `depths` read just now.
    pub fn text(&self, depths: &Depths) -> String {
        self.set_depths(depths);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// The JSON snapshot, `depths` read just now.
    pub fn snapshot(&self, depths: &Depths) -> MetricsSnapshot {
        let rss = self.set_depths(depths);
        let store = self
            .store_depths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        snapshot::of(self, depths, store, rss)
    }
}
