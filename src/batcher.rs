//! Group commit: one writer task takes publish requests in arrival order, appends as many as are
//! waiting (up to `batch.maxSize` events, waiting up to `batch.maxDelayMs` for more) in one store
//! call, routes the committed events in position order, then answers each request.
//!
//! Answers are handed on by the writer itself, one after another before it does anything else,
//! so the answers of one commit enter the napi layer's channel together; while those callers are
//! on their way back ([`Batcher::expect_return`]) the next commit waits for them. When a commit
//! waits, and how answered callers count until they are back, is [`commit_wait`].

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::BatchConfig;
use crate::error::{EventBusError, Result};
use crate::event::Event;
use crate::metrics::Metrics;
use crate::store::{Appended, Store};
use crate::tailer::Tailer;

pub mod commit_wait;

pub use commit_wait::Arrival;
use commit_wait::{Expected, ARRIVAL_WAIT};

/// Requests that may wait for the writer before publishers feel back-pressure.
const QUEUE_DEPTH: usize = 16 * 1024;

/// Receives the result of a write; run by the writer as it answers the commit, so it must be
/// quick and must not block.
pub type Answer = Box<dyn FnOnce(Result<Vec<Appended>>) + Send>;

enum Msg {
    Write {
        events: Vec<Event>,
        answer: Answer,
        /// Dropped by the writer as it takes the request, so the count of arrivals it waits for
        /// never includes one already in its hands (dropping it after the send let the writer
        /// wait a wake-up for the publisher's own arrival).
        arrival: Option<Arrival>,
    },
    /// Answered once everything queued before it is stored and routed; the writer then stops.
    Shutdown(oneshot::Sender<()>),
}

/// The way to the writer task: publishes are queued through it, in order.
pub struct Batcher {
    tx: mpsc::Sender<Msg>,
    expected: Expected,
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
        let expected = Expected::new(store.fixed_commit_cost());
        tokio::spawn(writer(rx, store, tailer, metrics, config, expected.clone()).instrument(span));
        Batcher { tx, expected }
    }

    /// Announces a publish that will reach `write` or `submit` soon (see [`Arrival`]).
    pub fn expect_arrival(&self) -> Arrival {
        self.expected.arrival()
    }

    /// Announces a caller being answered who will probably publish again at once (one awaiting
    /// each publish in a loop); None where a commit costs too little for holding it to pay.
    pub fn expect_return(&self) -> Option<Arrival> {
        self.expected.returning()
    }

    /// Publish requests waiting for the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues `events` to be stored atomically, after everything queued before them; the writer
    /// hands the result to `answer` (also when the writer has stopped: CLOSED).
    pub async fn submit(&self, events: Vec<Event>, arrival: Option<Arrival>, answer: Answer) {
        let msg = Msg::Write {
            events,
            answer,
            arrival,
        };
        if let Err(mpsc::error::SendError(Msg::Write { answer, .. })) = self.tx.send(msg).await {
            answer(Err(EventBusError::closed()));
        }
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
    expected: Expected,
) {
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    while shutdown.is_none() {
        let Some(first) = rx.recv().await else { break };
        let mut requests = Vec::new();
        let mut answers = Vec::new();
        let mut size = 0usize;
        let mut take = |msg: Msg, size: &mut usize| match msg {
            Msg::Write {
                events,
                answer,
                arrival,
            } => {
                drop(arrival);
                *size += events.len();
                requests.push(events);
                answers.push(answer);
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
                    if expected.any(size) && Instant::now() < arrival_deadline =>
                {
                    tokio::select! {
                        msg = rx.recv() => msg,
                        // Everyone arrived (or was rejected on the way): look at the queue again.
                        _ = expected.gone(size) => continue,
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
            commit(&*store, &tailer, &metrics, requests, answers).await;
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
    answers: Vec<Answer>,
) {
    let events: usize = requests.iter().map(Vec::len).sum();
    let span = tracing::debug_span!("commit", requests = requests.len(), events);
    let started = std::time::Instant::now();
    let results = store.append(requests).instrument(span).await;
    let took = started.elapsed();
    // The commit's fresh events, in store (position) order: counted once (per-type counts cost a
    // label lookup per type) and handed to the tailer together, before any caller is answered,
    // so their deliveries are counted first.
    let mut fresh = Vec::new();
    let mut appended = 0;
    for result in results.iter().flatten() {
        appended += result.len();
        fresh.extend(result.iter().filter(|a| a.fresh).map(|a| a.event.clone()));
    }
    metrics.committed(&fresh, appended, took);
    tailer.local(fresh);
    for (result, answer) in results.into_iter().zip(answers) {
        // An answer is caller code: its panic must not take the writer (and every later
        // publish) with it.
        if std::panic::catch_unwind(AssertUnwindSafe(move || answer(result))).is_err() {
            tracing::error!("a publish's answer panicked");
        }
    }
}
