//! Counters the bus keeps about itself. Cheap atomics, read as a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

#[derive(Debug, Default)]
pub struct Metrics {
    pub published: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub delivered: AtomicU64,
    pub handler_errors: AtomicU64,
    pub batches: AtomicU64,
    pub delivery_batches: AtomicU64,
    pub group_retries: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub webhooks_delivered: AtomicU64,
    pub webhook_failures: AtomicU64,
    pub webhooks_dead: AtomicU64,
    /// Open SSE streams (a gauge).
    pub sse_connections: AtomicU64,
    pub sse_dropped: AtomicU64,
    pub sse_resets: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSnapshot {
    /// Events committed to the store.
    pub published: u64,
    /// Publishes of an existing id with identical content (answered from the store, not delivered).
    pub duplicates: u64,
    /// Publishes refused by validation, security or middleware.
    pub rejected: u64,
    /// Handler invocations that completed.
    pub delivered: u64,
    /// Handler invocations that threw or rejected.
    pub handler_errors: u64,
    /// Write batches (group commits) performed.
    pub batches: u64,
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
    /// SSE streams open now (servers and `stream()`).
    pub sse_connections: u64,
    /// SSE streams closed because the client fell too far behind.
    pub sse_dropped: u64,
    /// SSE streams that started with `event: reset` (last id older than the log).
    pub sse_resets: u64,
    pub subscribers: u64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self, subscribers: u64) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            published: get(&self.published),
            duplicates: get(&self.duplicates),
            rejected: get(&self.rejected),
            delivered: get(&self.delivered),
            handler_errors: get(&self.handler_errors),
            batches: get(&self.batches),
            delivery_batches: get(&self.delivery_batches),
            group_retries: get(&self.group_retries),
            dead_lettered: get(&self.dead_lettered),
            webhooks_delivered: get(&self.webhooks_delivered),
            webhook_failures: get(&self.webhook_failures),
            webhooks_dead: get(&self.webhooks_dead),
            sse_connections: get(&self.sse_connections),
            sse_dropped: get(&self.sse_dropped),
            sse_resets: get(&self.sse_resets),
            subscribers,
        }
    }
}
