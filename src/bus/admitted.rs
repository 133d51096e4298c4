//! Admission: every operation is counted from the moment a caller starts it, so that `close`
//! drains what was started before it and refuses what comes after.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::{EventBus, Published};
use crate::batcher::{Answer, Arrival};
use crate::error::{EventBusError, Result};
use crate::event::Event;
use crate::in_flight::InFlight;
use crate::middleware::security::scoped_tenant;
use crate::middleware::Scope;
use crate::query::{into_page, EventFilter, Page};
use crate::retention::archive_all;

/// Counts operations in flight so `close` can wait for them; refuses new ones once closed.
#[derive(Default)]
pub(super) struct Gate {
    closed: AtomicBool,
    pub(super) in_flight: InFlight,
}

impl Gate {
    pub(super) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(EventBusError::closed());
        }
        Ok(())
    }

    pub(super) async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.in_flight.idle().await;
    }
}

/// An operation admitted before `close`: close waits for it to finish. Taken synchronously when
/// a caller starts an operation (e.g. the moment JS calls `publish`), so a publish started before
/// `close()` is drained, never refused, even if its future only runs later.
pub struct Admitted {
    pub(super) bus: EventBus,
    /// Held until a publish is queued for the writer (dropped at once by other operations).
    pub(super) arrival: Option<Arrival>,
    /// When the caller started it (a publish's latency is measured from here).
    pub(super) since: std::time::Instant,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.bus.inner.gate.in_flight.done(1);
    }
}

impl Admitted {
    /// Validates, stores and routes one event; resolves after it is committed.
    pub async fn publish(self, event: Event, scope: &Scope) -> Result<Published> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.publish_then(event, scope, move |result| {
            // A publisher that stopped waiting does not stop the others.
            let _ = tx.send(result);
        })
        .await;
        rx.await.map_err(|_| EventBusError::closed())?
    }

    /// As [`Admitted::publish`], but the result goes to `done`, called by the writer as it
    /// answers the commit (see the `batcher` module), or at once if the event is refused or not
    /// stored. `done` must be quick and must not block.
    pub async fn publish_then(
        self,
        event: Event,
        scope: &Scope,
        done: impl FnOnce(Result<Published>) + Send + 'static,
    ) {
        self.publish_all_then(vec![event], scope, false, move |result| {
            done(result.and_then(|mut published| published.pop().ok_or_else(no_event)))
        })
        .await;
    }

    /// Publishes several events atomically: all are stored, or none (the error names the index).
    pub(crate) async fn publish_many(
        self,
        events: Vec<Event>,
        scope: &Scope,
    ) -> Result<Vec<Published>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.publish_all_then(events, scope, true, move |result| {
            let _ = tx.send(result);
        })
        .await;
        rx.await.map_err(|_| EventBusError::closed())?
    }

    /// Runs the middleware on `events`, then stores them atomically (unless the bus is disabled
    /// or there are none) and hands them to `done`; `indexed` (publishMany) names a refused
    /// event's index. Returns once the events are queued for the writer.
    async fn publish_all_then(
        mut self,
        events: Vec<Event>,
        scope: &Scope,
        indexed: bool,
        done: impl FnOnce(Result<Vec<Published>>) + Send + 'static,
    ) {
        let kind = if indexed { "many" } else { "one" };
        let span = self.bus.publish_span(kind, &events);
        let arrival = self.arrival.take();
        let bus = &self.bus;
        // Every answer is measured, refused or stored: latency and errors by code.
        let metrics = bus.inner.metrics.clone();
        let since = self.since;
        let done = move |result: Result<Vec<Published>>| {
            metrics.answered(since.elapsed(), result.as_ref().err().map(|e| e.code()));
            done(result)
        };
        let accepted = match bus
            .accept(events, scope, indexed)
            .instrument(span.clone())
            .await
        {
            Ok(accepted) if bus.inner.config.enabled && !accepted.is_empty() => accepted,
            Ok(accepted) => {
                return done(Ok(accepted.into_iter().map(Published::NotStored).collect()));
            }
            Err(e) => return done(Err(e)),
        };
        let in_span = span.clone();
        let answer: Answer = Box::new(move |result| {
            done(result.map(|appended| {
                appended
                    .into_iter()
                    .map(|a| Published::Stored(a.event))
                    .collect()
            }));
            // The publish span ends with the answer, so it covers the commit.
            drop(in_span);
        });
        // Once queued, close() drains it before the writer stops (Batcher::shutdown).
        bus.inner
            .batcher
            .submit(accepted, arrival, answer)
            .instrument(span)
            .await;
    }

    /// Moves events older than `older_than` to the archive, in bounded batches, at most `limit`
    /// of them (oldest first) when given; returns how many moved. Safe to run concurrently and to
    /// re-run after a crash.
    pub(crate) async fn archive(
        mut self,
        older_than: DateTime<Utc>,
        limit: Option<u64>,
    ) -> Result<u64> {
        self.arrival.take();
        archive_all(&*self.bus.inner.store, older_than, limit).await
    }

    pub(crate) async fn get_events(
        mut self,
        mut filter: EventFilter,
        scope: &Scope,
    ) -> Result<Page> {
        self.arrival.take();
        let inner = &self.bus.inner;
        filter.tenant_id = scoped_tenant(scope, filter.tenant_id)?;
        let query = filter.resolve()?;
        let rows = inner.store.query(&query).await?;
        Ok(into_page(rows, &query))
    }
}

fn no_event() -> EventBusError {
    EventBusError::StoreUnavailable("store returned no event".into())
}
