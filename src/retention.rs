//! Background retention: on a timer, archive events old enough and delete archived events kept
//! long enough (`retention` options); also the archiving loop behind `archive(olderThan)`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::{Instrument, Span};

use crate::config::RetentionConfig;
use crate::error::Result;
use crate::store::{Store, ARCHIVE_BATCH};

/// Moves events older than `older_than` to the archive in bounded batches (so no transaction
/// holds the log for long), at most `limit` of them when given (the oldest first); returns how
/// many moved. A caller that passes a limit and gets it back knows more may be left.
pub(crate) async fn archive_all(
    store: &dyn Store,
    older_than: DateTime<Utc>,
    limit: Option<u64>,
) -> Result<u64> {
    let mut total = 0;
    loop {
        let batch = match limit {
            Some(limit) => limit.saturating_sub(total).min(ARCHIVE_BATCH as u64) as usize,
            None => ARCHIVE_BATCH,
        };
        if batch == 0 {
            return Ok(total);
        }
        let moved = store.archive_batch(older_than, batch).await?;
        total += moved;
        if moved < batch as u64 {
            return Ok(total);
        }
    }
}

/// One retention pass: archive what is old enough, then delete what was archived long enough ago.
async fn retention_pass(store: &dyn Store, config: &RetentionConfig) -> Result<(u64, u64)> {
    let now = Utc::now();
    let archived = match config
        .archive_after
        .and_then(|d| chrono::Duration::from_std(d).ok())
    {
        Some(age) => archive_all(store, now - age, None).await?,
        None => 0,
    };
    let mut purged = 0;
    if let Some(age) = config
        .delete_archived_after
        .and_then(|d| chrono::Duration::from_std(d).ok())
    {
        loop {
            let n = store.purge_archive_batch(now - age, ARCHIVE_BATCH).await?;
            purged += n;
            if n < ARCHIVE_BATCH as u64 {
                break;
            }
        }
    }
    Ok((archived, purged))
}

/// The running retention task of one bus.
pub(crate) struct Retention {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Retention {
    /// Runs retention passes every `config.interval` until stopped; none when nothing is to be
    /// archived or deleted.
    pub(crate) fn spawn(
        store: Arc<dyn Store>,
        config: RetentionConfig,
        span: Span,
    ) -> Option<Retention> {
        if config.archive_after.is_none() && config.delete_archived_after.is_none() {
            return None;
        }
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(
            async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(config.interval) => {}
                        _ = stopped.changed() => return,
                    }
                    match retention_pass(&*store, &config).await {
                        Ok((archived, purged)) if archived + purged > 0 => {
                            tracing::info!(archived, purged, "retention pass")
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "retention pass failed; retrying next interval")
                        }
                    }
                }
            }
            .instrument(span),
        );
        Some(Retention { stop, task })
    }

    /// Stops the task, waiting for a pass in progress to finish.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
