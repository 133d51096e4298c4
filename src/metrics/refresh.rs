//! Reads the figures that live in the store (webhook outbox, consumer-group lag) every
//! `metrics.refreshIntervalMs`, so that reading the metrics never waits for the store.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{GroupLag, Metrics, StoreDepths};
use crate::error::Result;
use crate::query::Query;
use crate::store::Store;

/// Refreshes until aborted (it only reads, so aborting mid-read is safe).
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    interval: Duration,
    span: tracing::Span,
) -> JoinHandle<()> {
    tokio::spawn(
        async move {
            loop {
                match read(&*store).await {
                    Ok(depths) => metrics.set_store_depths(depths),
                    Err(e) => tracing::debug!(error = %e, "reading the store's metrics failed"),
                }
                tokio::time::sleep(interval).await;
            }
        }
        .instrument(span),
    )
}

/// The store's figures now.
pub(crate) async fn read(store: &dyn Store) -> Result<StoreDepths> {
    let outbox = store.webhooks().outbox_depth().await?;
    let checkpoints = store.groups().lowest_checkpoints().await?;
    let mut groups = Vec::with_capacity(checkpoints.len());
    if !checkpoints.is_empty() {
        let head = store.head_position().await?;
        for (group, checkpoint) in checkpoints {
            groups.push(lag(store, group, checkpoint, head).await?);
        }
    }
    Ok(StoreDepths {
        webhook_pending: outbox.pending,
        webhook_retrying: outbox.retrying,
        webhook_dead: outbox.dead,
        groups,
    })
}

/// A group's lag: positions between its slowest partition and the head, and the age of the
/// first event past that partition's checkpoint.
async fn lag(store: &dyn Store, group: String, checkpoint: u64, head: u64) -> Result<GroupLag> {
    let events = head.saturating_sub(checkpoint);
    let mut seconds = 0.0;
    if events > 0 {
        let next = Query {
            after_position: Some(checkpoint),
            limit: 1,
            ..Query::default()
        };
        if let Some(oldest) = store.query(&next).await?.first() {
            let age = Utc::now() - oldest.event.timestamp;
            seconds = age.num_milliseconds().max(0) as f64 / 1000.0;
        }
    }
    Ok(GroupLag {
        group,
        events,
        seconds,
    })
}
