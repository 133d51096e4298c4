//! Feeds the router from the log, so every subscriber sees every committed event — this
//! instance's and other instances' sharing the database — once, in position order.
//!
//! Local commits are routed at once when they directly follow the last routed position (always
//! on the memory store, and on a database only this instance writes). Because appends are
//! serialised in commit order, a gap before a local batch can only hold other instances' events
//! (or rolled-back positions): the batch waits while the tailer task reads the gap. A doorbell
//! (PostgreSQL NOTIFY from other instances) or the steady fallback poll reads whatever is new.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{warn, Instrument};

use crate::event::SharedEvent;
use crate::query::Query;
use crate::router::Router;
use crate::store::Store;

/// Rows read per catch-up query.
const PAGE: usize = 1000;

enum Msg {
    Wake,
    Stop(oneshot::Sender<()>),
}

/// What has been routed, and local events waiting for a gap before them to be read.
#[derive(Default)]
struct Cursor {
    last: u64,
    held: Vec<SharedEvent>,
}

pub struct Tailer {
    tx: mpsc::UnboundedSender<Msg>,
    router: Arc<Router>,
    cursor: Arc<Mutex<Cursor>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

fn lock(cursor: &Mutex<Cursor>) -> MutexGuard<'_, Cursor> {
    cursor.lock().unwrap_or_else(|p| p.into_inner())
}

/// How many leading `events` follow `last` without a gap. Local events held from several commits
/// may have other instances' positions between them; those must be read first.
fn contiguous_prefix(mut last: u64, events: &[SharedEvent]) -> usize {
    events
        .iter()
        .take_while(|e| {
            let next = e.position <= last + 1;
            last = last.max(e.position);
            next
        })
        .count()
}

/// Routes `events` that are newer than the cursor and moves it.
fn route(router: &Router, cursor: &mut Cursor, events: &[SharedEvent]) {
    let start = events.partition_point(|e| e.position <= cursor.last);
    if let Some(last) = events.last().filter(|e| e.position > cursor.last) {
        cursor.last = last.position;
        router.dispatch(&events[start..]);
    }
}

impl Tailer {
    /// Starts after the newest stored event: live subscribers see what commits from now on.
    pub async fn start(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        poll: Duration,
        span: tracing::Span,
    ) -> crate::error::Result<Tailer> {
        let last = store.head_position().await?;
        let cursor = Arc::new(Mutex::new(Cursor {
            last,
            held: Vec::new(),
        }));
        let (tx, rx) = mpsc::unbounded_channel();
        let task =
            tokio::spawn(run(rx, store, router.clone(), cursor.clone(), poll).instrument(span));
        Ok(Tailer {
            tx,
            router,
            cursor,
            task: Mutex::new(Some(task)),
        })
    }

    /// The newest position this process knows of: the log's head when it opened, or what it has
    /// committed or tailed since.
    pub fn known_head(&self) -> u64 {
        lock(&self.cursor).last.max(self.router.head())
    }

    /// Events this instance just committed, in position order.
    pub fn local(&self, events: Vec<SharedEvent>) {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return;
        };
        let (first, last) = (first.position, last.position);
        // Counted as pending deliveries until routed, so Node stays up for them.
        self.router.hold(events.len(), last);
        let mut cursor = lock(&self.cursor);
        if cursor.held.is_empty()
            && first <= cursor.last + 1
            && contiguous_prefix(cursor.last, &events) == events.len()
        {
            route(&self.router, &mut cursor, &events);
            self.router.release(events.len());
        } else {
            cursor.held.extend(events);
            drop(cursor);
            let _ = self.tx.send(Msg::Wake);
        }
    }

    pub fn waker(&self) -> impl Fn() + Send + Sync + 'static {
        let tx = self.tx.clone();
        move || {
            let _ = tx.send(Msg::Wake);
        }
    }

    /// Routes everything handed over so far, then stops.
    pub async fn stop(&self) {
        let (done, stopped) = oneshot::channel();
        if self.tx.send(Msg::Stop(done)).is_ok() {
            let _ = stopped.await;
        }
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Msg>,
    store: Arc<dyn Store>,
    router: Arc<Router>,
    cursor: Arc<Mutex<Cursor>>,
    poll: Duration,
) {
    let reader = Reader {
        store,
        router,
        cursor,
    };
    // A steady tick, not a sleep restarted by every message: busy local traffic must not starve
    // the poll that brings other instances' events where there is no doorbell (SQLite).
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            _ = tick.tick() => Some(Msg::Wake),
        };
        match msg {
            Some(Msg::Wake) => reader.advance().await,
            Some(Msg::Stop(done)) => {
                reader.advance().await;
                let _ = done.send(());
                return;
            }
            None => return,
        }
    }
}

struct Reader {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    cursor: Arc<Mutex<Cursor>>,
}

impl Reader {
    /// Reads what is new in the log, routing held local events in their place. A failed read
    /// leaves held events for the next wake or tick.
    async fn advance(&self) {
        loop {
            let (last, first_held) = {
                let cursor = lock(&self.cursor);
                (cursor.last, cursor.held.first().map(|e| e.position))
            };
            if first_held.is_some_and(|first| first <= last + 1) {
                let mut cursor = lock(&self.cursor);
                let ready = contiguous_prefix(cursor.last, &cursor.held);
                let held: Vec<SharedEvent> = cursor.held.drain(..ready).collect();
                route(&self.router, &mut cursor, &held);
                self.router.release(held.len());
                continue;
            }
            // Read up to the first held event (the gap), or everything new.
            let query = Query {
                after_position: Some(last),
                before_position: first_held,
                limit: PAGE,
                ..Query::default()
            };
            let mut rows = match self.store.query(&query).await {
                Ok(rows) => rows,
                Err(e) => {
                    warn!(error = %e, "reading new events failed; retrying on the next poll");
                    return;
                }
            };
            rows.truncate(PAGE);
            let full = rows.len() == PAGE;
            {
                let mut cursor = lock(&self.cursor);
                route(&self.router, &mut cursor, &rows);
                // The gap is read: held events come next.
                if let Some(first) = first_held.filter(|_| !full) {
                    cursor.last = cursor.last.max(first - 1);
                }
            }
            if !full && first_held.is_none() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, StoredEvent};

    fn at(positions: &[u64]) -> Vec<SharedEvent> {
        positions
            .iter()
            .map(|&p| {
                Arc::new(StoredEvent::new(
                    Event::from_json(r#"{"type":"a.b","payload":1}"#).expect("event"),
                    p,
                ))
            })
            .collect()
    }

    #[test]
    fn contiguous_prefix_stops_at_the_first_gap() {
        assert_eq!(contiguous_prefix(5, &at(&[6, 7, 8])), 3);
        assert_eq!(
            contiguous_prefix(5, &at(&[6, 8])),
            1,
            "7 belongs to someone else: read it first"
        );
        assert_eq!(contiguous_prefix(5, &at(&[7])), 0);
        assert_eq!(
            contiguous_prefix(5, &at(&[4, 5, 6])),
            3,
            "already routed positions do not block"
        );
        assert_eq!(contiguous_prefix(0, &at(&[])), 0);
    }
}
