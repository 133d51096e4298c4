//! Settles `publish` calls in batches through one threadsafe function. A promise per native call
//! costs a threadsafe function per call, which capped one-call-per-event publishing at 20–40k
//! calls/s here; instead JS numbers each publish, and finished ones come back together as one JSON
//! array `[[id, event], [id], [id, null, "CODE: message"], …]` (one wake-up and one `JSON.parse`
//! for all; `[id]` when the caller asked for no event).
//!
//! An answer on its way to JS counts as an expected arrival at the writer (see
//! `batcher::Arrival`) until JS has handled it: a caller awaiting each publish usually publishes
//! again as soon as it is answered, and the writer then waits for it and the rest of its commit
//! instead of committing whoever queued meanwhile alone (groups of callers would otherwise
//! alternate between commits, each waiting for the other's). Each publish JS hands over releases
//! one such token (that publish now holds an arrival of its own); JS reporting a batch handled
//! (`settled`) releases the rest of that batch's.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::Function;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi::Status;
use tokio::sync::mpsc;

use super::js_callbacks::{weak, Tsfn};
use crate::batcher::Arrival;
use crate::bus::{EventBus, Published};

/// Most completions, and about the most bytes, handed over in one call (events may be large; a
/// string past V8's limit could not be made at all).
const BATCH: usize = 4096;
const BATCH_BYTES: usize = 8 << 20;

/// The bit of a publish id asking for a result without the event (see `NativeBus::publish_batch`).
pub const QUIET: u32 = 1 << 31;

/// A publish's id, its result (None: stored, the event not wanted; an error as "CODE: message"),
/// and its caller's arrival token.
pub type Completion = (
    u32,
    std::result::Result<Option<Published>, String>,
    Option<Arrival>,
);

/// Arrival tokens of the answers handed to JS, one entry per batch, oldest first.
type InTransit = Arc<Mutex<VecDeque<Vec<Arrival>>>>;

pub struct Completions {
    tx: mpsc::UnboundedSender<Completion>,
    bus: EventBus,
    in_transit: InTransit,
}

impl Completions {
    /// Starts the task that hands completions to `settle` (weak: it never keeps Node alive; the
    /// JS side keeps the loop alive while publishes are pending).
    pub fn start(bus: &EventBus, settle: &Function<String, ()>) -> napi::Result<Completions> {
        let tsfn: Tsfn<()> = weak(settle)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Completion>();
        let in_transit = InTransit::default();
        let batches = in_transit.clone();
        bus.spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut out = String::from("[");
                let mut tokens = Vec::new();
                tokens.extend(push(&mut out, first));
                for _ in 1..BATCH {
                    if out.len() >= BATCH_BYTES {
                        break;
                    }
                    let Ok(next) = rx.try_recv() else { break };
                    out.push(',');
                    tokens.extend(push(&mut out, next));
                }
                out.push(']');
                lock(&batches).push_back(tokens);
                if tsfn.call(out, ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok {
                    lock(&batches).pop_back();
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

    /// JS is handing over `calls` publishes: as many expected callers are here (or JS is busy
    /// publishing, and the others will be reported by `settled`), so as many tokens go.
    pub fn publishing(&self, calls: usize) {
        // Entries stay, even empty, until `settled` counts them off.
        let mut batches = lock(&self.in_transit);
        for _ in 0..calls {
            let Some(token) = batches.iter_mut().find_map(Vec::pop) else {
                break;
            };
            drop(token);
        }
    }

    /// JS has handled the oldest `batches` batches, and everything their callers did at once.
    pub fn settled(&self, batches: u32) {
        let mut in_transit = lock(&self.in_transit);
        for _ in 0..batches {
            if in_transit.pop_front().is_none() {
                break;
            }
        }
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

fn lock(in_transit: &InTransit) -> std::sync::MutexGuard<'_, VecDeque<Vec<Arrival>>> {
    in_transit.lock().unwrap_or_else(|p| p.into_inner())
}
