//! Feeds the router from the log, so every subscriber sees every committed event — this
//! instance's and other instances' sharing the database — once, in position order.
//!
//! Local commits are handed over directly. Because appends are serialised in commit order, a
//! gap before a local batch can only hold other instances' events (or rolled-back positions), so it
//! is read from the store first. A doorbell (PostgreSQL NOTIFY from other instances) or the
//! fallback poll reads whatever is new after the last position routed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{warn, Instrument};

use crate::event::SharedEvent;
use crate::query::{Order, Query};
use crate::router::Router;
use crate::store::Store;

/// Rows read per catch-up query.
const PAGE: usize = 1000;

enum Msg {
    Local(Vec<SharedEvent>),
    Wake,
    Stop(oneshot::Sender<()>),
}

pub struct Tailer {
    tx: mpsc::UnboundedSender<Msg>,
    router: Arc<Router>,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    /// Highest position routed so far.
    last: u64,
    /// Local events waiting for the gap before them to be read.
    held: Vec<SharedEvent>,
}

impl Tailer {
    /// Starts after the newest stored event: live subscribers see what commits from now on.
    pub async fn start(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        poll: Duration,
        span: tracing::Span,
    ) -> crate::error::Result<Tailer> {
        let head = Query {
            limit: 1,
            order: Order::Desc,
            ..Query::default()
        };
        let last = store.query(&head).await?.first().map_or(0, |e| e.position);
        let (tx, rx) = mpsc::unbounded_channel();
        let state = State {
            store,
            router: router.clone(),
            last,
            held: Vec::new(),
        };
        let task = tokio::spawn(run(rx, state, poll).instrument(span));
        Ok(Tailer {
            tx,
            router,
            task: Mutex::new(Some(task)),
        })
    }

    /// Events this instance just committed, in position order.
    pub fn local(&self, events: Vec<SharedEvent>) {
        if events.is_empty() {
            return;
        }
        // Counted as pending deliveries until routed, so Node stays up for them.
        let count = events.len();
        let last = events.last().map_or(0, |e| e.position);
        self.router.hold(count, last);
        if self.tx.send(Msg::Local(events)).is_err() {
            self.router.release(count);
        }
    }

    /// Something may have been committed elsewhere.
    pub fn wake(&self) {
        let _ = self.tx.send(Msg::Wake);
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

async fn run(mut rx: mpsc::UnboundedReceiver<Msg>, mut state: State, poll: Duration) {
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
            Some(Msg::Local(events)) => {
                state.held.extend(events);
                state.advance(false).await;
            }
            Some(Msg::Wake) => state.advance(true).await,
            Some(Msg::Stop(done)) => {
                state.advance(false).await;
                let _ = done.send(());
                return;
            }
            None => return,
        }
    }
}

impl State {
    /// Routes held local events after reading any gap before them; with `everything`, also reads
    /// what is new in the log. A failed read leaves the held events for the next attempt.
    async fn advance(&mut self, everything: bool) {
        if let Some(first) = self.held.first().map(|e| e.position) {
            if first > self.last + 1 && !self.catch_up(Some(first)).await {
                return;
            }
            let held = std::mem::take(&mut self.held);
            let count = held.len();
            let fresh: Vec<SharedEvent> = held
                .into_iter()
                .filter(|e| e.position > self.last)
                .collect();
            if let Some(last) = fresh.last() {
                self.last = last.position;
            }
            self.router.dispatch(&fresh);
            self.router.release(count);
        }
        if everything {
            self.catch_up(None).await;
        }
    }

    /// Reads and routes stored events after `last` (and before `before`); false on a read error.
    async fn catch_up(&mut self, before: Option<u64>) -> bool {
        loop {
            let query = Query {
                after_position: Some(self.last),
                before_position: before,
                limit: PAGE,
                ..Query::default()
            };
            let mut rows = match self.store.query(&query).await {
                Ok(rows) => rows,
                Err(e) => {
                    warn!(error = %e, "reading new events failed; retrying on the next poll");
                    return false;
                }
            };
            rows.truncate(PAGE);
            let Some(last) = rows.last().map(|e| e.position) else {
                return true;
            };
            self.router.dispatch(&rows);
            self.last = last;
            if rows.len() < PAGE {
                return true;
            }
        }
    }
}
