//! Settles `publish` calls in batches through one threadsafe function. A promise per native call
//! costs a threadsafe function per call, which capped one-call-per-event publishing at 20–40k
//! calls/s here; instead JS numbers each publish, and finished ones come back together as one JSON
//! array `[[id, event], [id], [id, null, "CODE: message"], …]` (one wake-up and one `JSON.parse`
//! for all; `[id]` when the caller asked for no event).
//!
//! Each answer carries its caller's arrival token to JS; how batches are cut and when their
//! tokens go is the commit-wait protocol, in the core (`batcher::commit_wait`), which JS feeds
//! through `publishing` and `settled`. This file renders the batches and calls JS.

use std::fmt::Write;
use std::sync::Arc;

use napi::bindgen_prelude::Function;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi::Status;
use tokio::sync::mpsc;

use super::js_callbacks::{weak, Tsfn};
use crate::batcher::commit_wait::{HandOver, InTransit};
use crate::batcher::Arrival;
use crate::bus::{EventBus, Published};

/// The bit of a publish id asking for a result without the event (see `NativeBus::publish_batch`).
pub const QUIET: u32 = 1 << 31;

/// A publish's id, its result (None: stored, the event not wanted; an error as "CODE: message"),
/// and its caller's arrival token.
pub type Completion = (
    u32,
    std::result::Result<Option<Published>, String>,
    Option<Arrival>,
);

/// The publish sink: where replies send their answers, and the batches JS holds.
pub struct Completions {
    tx: mpsc::UnboundedSender<Completion>,
    bus: EventBus,
    in_transit: Arc<InTransit>,
}

impl Completions {
    /// Starts the task that hands completions to `settle` (weak: it never keeps Node alive; the
    /// JS side keeps the loop alive while publishes are pending).
    pub fn start(bus: &EventBus, settle: &Function<String, ()>) -> napi::Result<Completions> {
        let tsfn: Tsfn<()> = weak(settle)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Completion>();
        let in_transit = Arc::new(InTransit::default());
        let batches = in_transit.clone();
        bus.spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut out = String::from("[");
                let mut batch = HandOver::default();
                batch.add(push(&mut out, first));
                while batch.has_room(out.len()) {
                    let Ok(next) = rx.try_recv() else { break };
                    out.push(',');
                    batch.add(push(&mut out, next));
                }
                out.push(']');
                batches.handing_over(batch);
                if tsfn.call(out, ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok {
                    batches.not_handed_over();
                    break; // the JS side is gone
                }
            }
        });
        Ok(Completions {
            tx,
            bus: bus.clone(),
            in_transit,
        })
    }

    /// JS is handing over `calls` publishes (see [`InTransit::publishing`]).
    pub fn publishing(&self, calls: usize) {
        self.in_transit.publishing(calls);
    }

    /// JS has handled the oldest `batches` batches (see [`InTransit::settled`]).
    pub fn settled(&self, batches: u32) {
        self.in_transit.settled(batches);
    }

    /// Where one publish reports its result (an error if it ends without one, e.g. a panic, so
    /// no promise is left pending); `quiet`: without the event.
    pub fn reply(&self, id: u32, quiet: bool) -> Reply {
        Reply {
            id,
            quiet,
            tx: Some(self.tx.clone()),
            bus: self.bus.clone(),
        }
    }
}

/// One publish's way back to JS (see [`Completions::reply`]).
pub struct Reply {
    id: u32,
    quiet: bool,
    tx: Option<mpsc::UnboundedSender<Completion>>,
    bus: EventBus,
}

impl Reply {
    /// Called by the writer as it answers the commit (or earlier, for a refused publish); the
    /// event is rendered by the completions task, not by the writer.
    pub fn send(mut self, result: crate::error::Result<Published>) {
        self.answer(result.map_err(|e| format!("{}: {}", e.code(), e)));
    }

    fn answer(&mut self, result: std::result::Result<Published, String>) {
        let result = result.map(|published| (!self.quiet).then_some(published));
        if let Some(tx) = self.tx.take() {
            // Taken before the writer moves on, so its next commit sees this caller coming.
            let _ = tx.send((self.id, result, self.bus.expect_return()));
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.answer(Err(
                "STORE_UNAVAILABLE: the publish ended without a result".to_string()
            ));
        }
    }
}

/// Appends one completion to the batch; returns its arrival token.
fn push(out: &mut String, (id, result, token): Completion) -> Option<Arrival> {
    // Writing to a String cannot fail.
    let _ = match result {
        Ok(Some(published)) => write!(out, "[{id},{}]", published.json()),
        Ok(None) => write!(out, "[{id}]"),
        Err(reason) => write!(out, "[{id},null,{}]", serde_json::Value::String(reason)),
    };
    token
}
