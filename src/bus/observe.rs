//! What the bus tells about itself: metrics (JSON and Prometheus text, and `/metrics` served
//! from Rust when `metrics.listen` is set) and health.

use std::sync::Arc;

use super::{lock, EventBus};
use crate::error::Result;
use crate::health::{self, HealthReport};
use crate::metrics::{refresh, Depths, MetricsSnapshot};
use crate::transport::metrics_http;

impl EventBus {
    /// The metrics as a JSON-able snapshot.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot(&self.depths())
    }

    /// Whether the bus can do its work now (see [`crate::health`]); each call checks afresh.
    pub async fn health(&self) -> HealthReport {
        health::check(&*self.inner.store, &self.inner.config.health).await
    }

    /// Reads the store's figures for the metrics (webhook outbox, group lag) now, instead of at
    /// the next `metrics.refreshIntervalMs`.
    pub async fn refresh_metrics(&self) -> Result<()> {
        self.inner.gate.check_open()?;
        let depths = refresh::read(&*self.inner.store).await?;
        self.inner.metrics.set_store_depths(depths);
        Ok(())
    }

    /// Where `/metrics` is served (`metrics.listen`), once bound.
    pub fn metrics_url(&self) -> Option<String> {
        lock(&self.inner.metrics_server)
            .as_ref()
            .map(|s| s.url.clone())
    }

    /// The metrics as Prometheus text (format 0.0.4).
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.text(&self.depths())
    }

    /// Gauges of the bus's parts, read now.
    fn depths(&self) -> Depths {
        let inner = &self.inner;
        Depths {
            batcher: inner.batcher.queued() as u64,
            subscribers: inner.router.pending() as u64,
            per_consumer: inner.router.queue_depths(),
            subscriptions: inner.router.subscriber_count() as u64,
            buffered_bytes: inner.router.buffered_bytes(),
            pool: inner.store.pool_stats(),
        }
    }

    /// Serves `/metrics` when `metrics.listen` is set (at open).
    pub(super) async fn serve_metrics(&self) -> Result<()> {
        let Some(listen) = &self.inner.config.metrics.listen else {
            return Ok(());
        };
        // Weak: the server must not keep a closed bus alive.
        let weak = Arc::downgrade(&self.inner);
        let render: metrics_http::Render = Arc::new(move || {
            weak.upgrade()
                .map(|inner| EventBus { inner }.metrics_text())
                .unwrap_or_default()
        });
        let server = metrics_http::serve(listen, render).await?;
        *lock(&self.inner.metrics_server) = Some(server);
        Ok(())
    }
}
