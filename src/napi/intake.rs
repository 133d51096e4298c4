//! Takes the publishes JS hands over in batches (`NativeBus::publish_batch`: one crossing for many
//! `publish` calls) through one task, in the order JS made them. Each event is still published on
//! its own — parsed, run through the middleware, queued for the writer, answered — and they run
//! concurrently, so a slow (JS) middleware on one holds up only that one; without one, they reach
//! the writer in publish order, across batches too.

use std::ops::Range;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use super::completions::Reply;
use crate::bus::{Admitted, EventBus};
use crate::error::EventBusError;
use crate::event::Event;
use crate::middleware::Scope;

/// Events: where each one's JSON is in `text`, its admission and where its result goes.
pub struct Batch {
    pub text: Arc<str>,
    pub events: Vec<(Range<usize>, Admitted, Reply)>,
    pub scope: Arc<Scope>,
}

pub struct Intake {
    tx: mpsc::UnboundedSender<Batch>,
}

impl Intake {
    pub fn start(bus: &EventBus) -> Intake {
        let (tx, rx) = mpsc::unbounded_channel();
        // Unconstrained: under tokio's budget every send to the writer past the 128th of a poll
        // returns Pending and wakes itself, and all the waiting publishes are polled again each
        // round — quadratic in a burst (measured: most of the workers' time with 10k at once).
        bus.spawn(tokio::task::unconstrained(run(rx)));
        Intake { tx }
    }

    pub fn send(&self, batch: Batch) {
        if let Err(mpsc::error::SendError(batch)) = self.tx.send(batch) {
            for (_, _, reply) in batch.events {
                reply.send(Err(EventBusError::closed()));
            }
        }
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Batch>) {
    let mut publishing = FuturesUnordered::new();
    loop {
        tokio::select! {
            // New batches first: their publishes are pushed behind the earlier ones, and first
            // polls follow push order.
            biased;
            batch = rx.recv() => {
                let Some(Batch { text, events, scope }) = batch else { break };
                for (range, admitted, reply) in events {
                    let (text, scope) = (text.clone(), scope.clone());
                    publishing.push(async move {
                        match Event::from_json(&text[range]) {
                            Ok(event) => admitted.publish_then(event, &scope, |p| reply.send(p)).await,
                            Err(e) => reply.send(Err(e)),
                        }
                    });
                }
            }
            Some(()) = publishing.next(), if !publishing.is_empty() => {}
        }
    }
    while publishing.next().await.is_some() {}
}
