//! Group commit: one writer task takes publish requests in arrival order, appends as many as are
//! waiting (up to `batch.maxSize` events, waiting up to `batch.maxDelayMs` for more) in one store
//! call, routes the committed events in position order, then answers each request.
//!
//! Answers are handed on by the writer itself, one after another before it does anything else,
//! so the answers of one commit enter the napi layer's channel together; while those callers are
//! on their way back ([`Batcher::expect_return`]) the next commit waits for them.
//! Callers that await each publish then share commits, instead of splitting into groups that
//! alternate between commits, each waiting for the other's.

use std::panic::AssertUnwindSafe;
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

/// A commit waits for answered callers to come back only while it holds fewer events than this:
/// a bigger one already shares its fixed cost (round trip, flush) widely, and letting it go while
/// the callers work overlaps their work with the commit (measured: 16 publishers with 32 publishes
/// in flight each lost ~8% when every commit waited for them).
const HOLD_FOR_RETURNS_BELOW: usize = 32;

/// A publish on its way to the writer: admitted but not yet queued, or (see
/// [`Batcher::expect_return`]) a caller being answered who will probably publish again. While any
/// exist, the writer holds a commit briefly (up to [`ARRIVAL_WAIT`]; for answered callers only a
/// small commit) so they join it: concurrent publishers then share one commit instead of
/// alternating between a commit of one and a commit of the rest.
pub struct Arrival(Arc<InFlight>);

impl Arrival {
    fn of(count: &Arc<InFlight>) -> Arrival {
        count.add(1);
        Arrival(count.clone())
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        self.0.done(1);
    }
}

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

pub struct Batcher {
    tx: mpsc::Sender<Msg>,
    expected: Expected,
    /// Whether answered callers are expected back (see [`Batcher::expect_return`]).
    hold_for_returns: bool,
}

/// Publishes the writer may wait for.
#[derive(Clone, Default)]
struct Expected {
    /// Admitted, not yet queued.
    arriving: Arc<InFlight>,
    /// Answered callers on their way back.
    returning: Arc<InFlight>,
}

impl Expected {
    /// Whether a commit of `size` events should wait for more.
    fn any(&self, size: usize) -> bool {
        self.arriving.get() > 0 || (size < HOLD_FOR_RETURNS_BELOW && self.returning.get() > 0)
    }

    /// Resolves once what `any(size)` waits for is gone (check again: more may have come).
    async fn gone(&self, size: usize) {
        self.arriving.idle().await;
        if size < HOLD_FOR_RETURNS_BELOW {
            self.returning.idle().await;
        }
    }
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
        let expected = Expected::default();
        let hold_for_returns = store.fixed_commit_cost();
        tokio::spawn(writer(rx, store, tailer, metrics, config, expected.clone()).instrument(span));
        Batcher {
            tx,
            expected,
            hold_for_returns,
        }
    }

    /// Announces a publish that will reach `write` or `submit` soon (see [`Arrival`]).
    pub fn expect_arrival(&self) -> Arrival {
        Arrival::of(&self.expected.arriving)
    }

    /// Announces a caller being answered who will probably publish again at once (one awaiting
    /// each publish in a loop); None where a commit costs too little for holding it to pay.
    pub fn expect_return(&self) -> Option<Arrival> {
        self.hold_for_returns
            .then(|| Arrival::of(&self.expected.returning))
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
    Metrics::add(&metrics.batches, 1);
    let results = store.append(requests).await;
    for (result, answer) in results.into_iter().zip(answers) {
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
        // An answer is caller code: its panic must not take the writer (and every later
        // publish) with it.
        if std::panic::catch_unwind(AssertUnwindSafe(move || answer(result))).is_err() {
            tracing::error!("a publish's answer panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn a_small_commit_waits_for_returning_callers_a_big_one_only_for_arrivals() {
        let expected = Expected::default();
        assert!(!expected.any(1), "nothing expected");
        let returning = Arrival::of(&expected.returning);
        assert!(expected.any(1));
        assert!(expected.any(HOLD_FOR_RETURNS_BELOW - 1));
        assert!(!expected.any(HOLD_FOR_RETURNS_BELOW), "big enough to go");
        let arriving = Arrival::of(&expected.arriving);
        assert!(
            expected.any(HOLD_FOR_RETURNS_BELOW * 10),
            "admitted publishes always"
        );

        // gone() resolves once what held the commit is gone, and not before.
        let gone = expected.gone(1);
        tokio::pin!(gone);
        assert!(gone.as_mut().now_or_never().is_none());
        drop(arriving);
        assert!(
            gone.as_mut().now_or_never().is_none(),
            "a caller is still returning"
        );
        drop(returning);
        gone.await;
        assert!(!expected.any(1));
    }
}
