//! Group commit: one writer task takes publish requests in arrival order, appends as many as are
//! waiting (up to `batch.maxSize` events, waiting up to `batch.maxDelayMs` for more) in one store
//! call, routes the committed events in position order, then answers each request.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::BatchConfig;
use crate::error::{EventBusError, Result};
use crate::event::Event;
use crate::in_flight::InFlight;
use crate::metrics::Metrics;
use crate::store::{Appended, Store};
use crate::tailer::Tailer;

/// Requests that may wait for the writer before publishers feel back-pressure.
const QUEUE_DEPTH: usize = 16 * 1024;

/// Longest a commit waits for publishes that were admitted but are still on their way.
const ARRIVAL_WAIT: Duration = Duration::from_millis(2);

/// A publish admitted but not yet queued for the writer. While any exist, the writer holds a
/// commit briefly so they join it: concurrent publishers then share one commit instead of
/// alternating between a commit of one and a commit of the rest.
pub struct Arrival(Arc<InFlight>);

impl Drop for Arrival {
    fn drop(&mut self) {
        self.0.done(1);
    }
}

enum Msg {
    Write {
        events: Vec<Event>,
        reply: oneshot::Sender<Result<Vec<Appended>>>,
        /// Dropped by the writer as it takes the request, so the count of arrivals it waits for
        /// never includes one already in its hands (dropping it after the send let the writer
        /// wait a wake-up for the publisher's own arrival).
        arrival: Option<Arrival>,
    },
    /// Answered once everything queued before it is stored and routed; the writer then stops.
    Shutdown(oneshot::Sender<()>),
}

pub struct Batcher {
    tx: mpsc::Sender<Msg>,
    arriving: Arc<InFlight>,
}

impl Batcher {
    pub fn spawn(
        store: Arc<dyn Store>,
        tailer: Arc<Tailer>,
        metrics: Arc<Metrics>,
        config: BatchConfig,
        span: tracing::Span,
    ) -> Batcher {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let arriving = Arc::new(InFlight::default());
        tokio::spawn(writer(rx, store, tailer, metrics, config, arriving.clone()).instrument(span));
        Batcher { tx, arriving }
    }

    /// Announces a publish that will reach `write` soon (see [`Arrival`]).
    pub fn expect_arrival(&self) -> Arrival {
        self.arriving.add(1);
        Arrival(self.arriving.clone())
    }

    /// Stores `events` atomically, after everything queued before them.
    pub async fn write(
        &self,
        events: Vec<Event>,
        arrival: Option<Arrival>,
    ) -> Result<Vec<Appended>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Write {
                events,
                reply,
                arrival,
            })
            .await
            .map_err(|_| EventBusError::closed())?;
        answer.await.map_err(|_| EventBusError::closed())?
    }

    /// Waits until every queued write is stored and routed, then stops the writer.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(reply)).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn writer(
    mut rx: mpsc::Receiver<Msg>,
    store: Arc<dyn Store>,
    tailer: Arc<Tailer>,
    metrics: Arc<Metrics>,
    config: BatchConfig,
    arriving: Arc<InFlight>,
) {
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    while shutdown.is_none() {
        let Some(first) = rx.recv().await else { break };
        let mut requests = Vec::new();
        let mut replies = Vec::new();
        let mut size = 0usize;
        let mut take = |msg: Msg, size: &mut usize| match msg {
            Msg::Write {
                events,
                reply,
                arrival,
            } => {
                drop(arrival);
                *size += events.len();
                requests.push(events);
                replies.push(reply);
                true
            }
            Msg::Shutdown(done) => {
                shutdown = Some(done);
                false
            }
        };
        let mut open = take(first, &mut size);
        let deadline = Instant::now() + Duration::from_millis(config.max_delay_ms);
        let arrival_deadline = Instant::now() + ARRIVAL_WAIT;
        while open && size < config.max_size {
            let next = match rx.try_recv() {
                Ok(msg) => Some(msg),
                Err(mpsc::error::TryRecvError::Empty)
                    if arriving.get() > 0 && Instant::now() < arrival_deadline =>
                {
                    tokio::select! {
                        msg = rx.recv() => msg,
                        // Everyone arrived (or was rejected on the way): look at the queue again.
                        _ = arriving.idle() => continue,
                        _ = tokio::time::sleep_until(arrival_deadline) => None,
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) if config.max_delay_ms > 0 => {
                    tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            match next {
                Some(msg) => open = take(msg, &mut size),
                None => break,
            }
        }
        if !requests.is_empty() {
            commit(&*store, &tailer, &metrics, requests, replies).await;
        }
    }
    if let Some(done) = shutdown {
        let _ = done.send(());
    }
}

async fn commit(
    store: &dyn Store,
    tailer: &Tailer,
    metrics: &Metrics,
    requests: Vec<Vec<Event>>,
    replies: Vec<oneshot::Sender<Result<Vec<Appended>>>>,
) {
    Metrics::add(&metrics.batches, 1);
    let results = store.append(requests).await;
    for (result, reply) in results.into_iter().zip(replies) {
        if let Ok(appended) = &result {
            let fresh: Vec<_> = appended
                .iter()
                .filter(|a| a.fresh)
                .map(|a| a.event.clone())
                .collect();
            Metrics::add(&metrics.published, fresh.len() as u64);
            Metrics::add(&metrics.duplicates, (appended.len() - fresh.len()) as u64);
            // Requests are answered in store order, so handing over here keeps position order.
            tailer.local(fresh);
        }
        // A publisher that stopped waiting does not stop the others.
        let _ = reply.send(result);
    }
}
