//! Settles `publish` calls in batches through one threadsafe function. A promise per native call
//! costs a threadsafe function per call, which capped one-call-per-event publishing at 20–40k
//! calls/s here; instead JS numbers each publish, and finished ones come back together as one JSON
//! array `[[id, event], [id, null, "CODE: message"], …]` (one wake-up and one `JSON.parse` for all).

use std::fmt::Write;

use napi::bindgen_prelude::Function;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi::Status;
use tokio::sync::mpsc;

use super::js_callbacks::{weak, Tsfn};
use crate::bus::EventBus;

/// Most completions, and about the most bytes, handed over in one call (events may be large; a
/// string past V8's limit could not be made at all).
const BATCH: usize = 4096;
const BATCH_BYTES: usize = 8 << 20;

pub type Completion = (u32, std::result::Result<String, String>);

pub struct Completions {
    tx: mpsc::UnboundedSender<Completion>,
}

impl Completions {
    /// Starts the task that hands completions to `settle` (weak: it never keeps Node alive; the
    /// JS side keeps the loop alive while publishes are pending).
    pub fn start(bus: &EventBus, settle: &Function<String, ()>) -> napi::Result<Completions> {
        let tsfn: Tsfn<()> = weak(settle)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Completion>();
        bus.spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut out = String::from("[");
                push(&mut out, first);
                for _ in 1..BATCH {
                    if out.len() >= BATCH_BYTES {
                        break;
                    }
                    let Ok(next) = rx.try_recv() else { break };
                    out.push(',');
                    push(&mut out, next);
                }
                out.push(']');
                if tsfn.call(out, ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok {
                    break; // the JS side is gone
                }
            }
        });
        Ok(Completions { tx })
    }

    /// Where one publish reports its result (an error if it ends without one, e.g. a panic, so
    /// no promise is left pending).
    pub fn reply(&self, id: u32) -> Reply {
        Reply {
            id,
            tx: Some(self.tx.clone()),
        }
    }
}

pub struct Reply {
    id: u32,
    tx: Option<mpsc::UnboundedSender<Completion>>,
}

impl Reply {
    pub fn send(mut self, result: std::result::Result<String, String>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send((self.id, result));
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let reason = "STORE_UNAVAILABLE: the publish ended without a result".to_string();
            let _ = tx.send((self.id, Err(reason)));
        }
    }
}

fn push(out: &mut String, (id, result): Completion) {
    // Writing to a String cannot fail.
    let _ = match result {
        Ok(event_json) => write!(out, "[{id},{event_json}]"),
        Err(reason) => write!(out, "[{id},null,{}]", serde_json::Value::String(reason)),
    };
}
