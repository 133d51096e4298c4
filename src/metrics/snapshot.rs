//! The JSON form of the metrics (`bus.metrics()`): totals, histogram counts and sums, and gauges.
//! Per-label breakdowns (by type, code, consumer, endpoint) are in the Prometheus text only.

use serde::Serialize;

use super::{Depths, Metrics, StoreDepths};

/// A consumer group's lag, as the latest refresh read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupLag {
    /// The group's name.
    pub group: String,
    /// Events past the group's lowest checkpoint.
    pub events: u64,
    /// Age of the oldest of them (0 when none).
    pub seconds: f64,
}

/// Count and sum of a histogram's observations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Totals {
    /// Observations made.
    pub count: u64,
    /// Their sum, in the histogram's unit.
    pub sum: f64,
}

/// What `bus.metrics()` returns: counts since the bus opened, and gauges (the store's as of the
/// latest refresh).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSnapshot {
    /// Events committed to the store.
    pub published: u64,
    /// Publishes of an existing id with identical content (answered from the store, not delivered).
    pub duplicates: u64,
    /// Publishes refused by validation, security or middleware.
    pub rejected: u64,
    /// Publishes that failed for any reason (refused, or the store failed).
    pub publish_errors: u64,
    /// Admitted → answered, in seconds.
    pub publish_seconds: Totals,
    /// Handler invocations that completed.
    pub delivered: u64,
    /// Handler invocations that threw or rejected.
    pub handler_errors: u64,
    /// Per event, in seconds.
    pub handler_seconds: Totals,
    /// Write batches (group commits) performed.
    pub batches: u64,
    /// Events per commit (count = commits).
    pub commit_events: Totals,
    /// Per commit, in seconds.
    pub commit_seconds: Totals,
    /// Calls into subscribers' sinks (each carries one or more events).
    pub delivery_batches: u64,
    /// Consumer-group handler calls that repeated a failed one.
    pub group_retries: u64,
    /// Events consumer groups gave up on (moved to their dead-letter table).
    pub dead_lettered: u64,
    /// Webhook deliveries that got a 2xx.
    pub webhooks_delivered: u64,
    /// Webhook attempts that failed (each retry counts).
    pub webhook_failures: u64,
    /// Webhook deliveries given up on (after the last retry, or 410).
    pub webhooks_dead: u64,
    /// Successful attempts / attempts since the bus opened (null before the first attempt).
    pub webhook_success_rate: Option<f64>,
    /// SSE streams open now (servers and `stream()`).
    pub sse_connections: u64,
    /// SSE streams closed because the client fell too far behind.
    pub sse_dropped: u64,
    /// SSE streams that started with `event: reset` (last id older than the log).
    pub sse_resets: u64,
    /// Live routes: subscriptions, and the SSE hub's and group members' wake-up routes.
    pub subscribers: u64,
    /// Publish requests waiting for the writer.
    pub batcher_queue: u64,
    /// Events routed to live subscribers and not yet handled.
    pub subscriber_queue: u64,
    /// Webhook outbox, from the latest refresh.
    pub webhook_pending: u64,
    /// Deliveries waiting for a retry.
    pub webhook_retrying: u64,
    /// Deliveries given up on and kept (replayable).
    pub webhook_dead_deliveries: u64,
    /// Consumer groups' lag, from the latest refresh.
    pub groups: Vec<GroupLag>,
    /// Store connections in use and idle (null for the memory store).
    pub pool_in_use: Option<u64>,
    /// Idle store connections (null for the memory store).
    pub pool_idle: Option<u64>,
    /// Acquires that found no idle connection in a full pool (null for the memory store).
    pub pool_waits: Option<u64>,
    /// The process's resident memory (0 where it cannot be read).
    pub process_rss_bytes: u64,
    /// Bytes of the events queued for subscribers (payload, metadata and type).
    pub buffered_bytes: u64,
}

pub(super) fn of(m: &Metrics, depths: &Depths, store: StoreDepths, rss: u64) -> MetricsSnapshot {
    let attempts = m.webhooks_delivered.get() + m.webhook_failures.get();
    MetricsSnapshot {
        published: m.published.get(),
        duplicates: m.duplicates.get(),
        rejected: m.rejected.get(),
        publish_errors: m.publish_errors_total.get(),
        publish_seconds: m.publish_seconds.totals(),
        delivered: m.delivered.get(),
        handler_errors: m.handler_errors.get(),
        handler_seconds: m.handler_seconds_all.totals(),
        batches: m.batches.get(),
        commit_events: m.commit_events.totals(),
        commit_seconds: m.commit_seconds.totals(),
        delivery_batches: m.delivery_batches.get(),
        group_retries: m.group_retries.get(),
        dead_lettered: m.dead_lettered.get(),
        webhooks_delivered: m.webhooks_delivered.get(),
        webhook_failures: m.webhook_failures.get(),
        webhooks_dead: m.webhooks_dead.get(),
        webhook_success_rate: (attempts > 0)
            .then(|| m.webhooks_delivered.get() as f64 / attempts as f64),
        sse_connections: m.sse_connections.get().max(0) as u64,
        sse_dropped: m.sse_dropped.get(),
        sse_resets: m.sse_resets.get(),
        subscribers: depths.subscriptions,
        batcher_queue: depths.batcher,
        subscriber_queue: depths.subscribers,
        webhook_pending: store.webhook_pending,
        webhook_retrying: store.webhook_retrying,
        webhook_dead_deliveries: store.webhook_dead,
        groups: store.groups,
        pool_in_use: depths.pool.map(|p| p.in_use),
        pool_idle: depths.pool.map(|p| p.idle),
        pool_waits: depths.pool.map(|p| p.waits),
        process_rss_bytes: rss,
        buffered_bytes: depths.buffered_bytes,
    }
}
