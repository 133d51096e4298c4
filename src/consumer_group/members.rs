//! Spawning this instance's group members: each joins the router as a doorbell (a [`WakeSink`])
//! and runs as a task, kept here so that `close` can stop them and hand their partitions back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{Instrument, Span};

use super::{GroupOptions, Member};
use crate::event::SharedEvent;
use crate::in_flight::WakeHold;
use crate::metrics::Metrics;
use crate::pattern::Pattern;
use crate::router::{Consumer, HandlerFailure, Router, Sink, SubscriberFilter, Subscription};
use crate::store::Store;

/// The consumer-group members of one bus.
pub(crate) struct Members {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    metrics: Arc<Metrics>,
    poll_interval: Duration,
    /// Where member tasks run, also when joined from outside the runtime (napi).
    runtime: tokio::runtime::Handle,
    running: Mutex<Vec<RunningMember>>,
}

struct RunningMember {
    stopped: Arc<AtomicBool>,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// Rings a group member's doorbell when a matching event commits (a route in the router). The ring
/// stays counted as a pending delivery until the member has caught up (see [`WakeHold`]).
struct WakeSink {
    wake: Arc<Notify>,
    busy: Arc<WakeHold>,
}

#[async_trait::async_trait]
impl Sink for WakeSink {
    async fn deliver(&self, _events: &[SharedEvent]) -> Vec<HandlerFailure> {
        self.busy.ring();
        self.wake.notify_one();
        Vec::new()
    }
}

impl Members {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        metrics: Arc<Metrics>,
        poll_interval: Duration,
        runtime: tokio::runtime::Handle,
    ) -> Members {
        Members {
            store,
            router,
            metrics,
            poll_interval,
            runtime,
            running: Mutex::new(Vec::new()),
        }
    }

    /// Starts a member of `group` that hands matching events to `sink`; cancelling the returned
    /// subscription stops it. `group.start` must already be resolved (not `Now`) by the caller.
    pub(crate) fn join(
        &self,
        patterns: Vec<Pattern>,
        filter: SubscriberFilter,
        group: GroupOptions,
        sink: Arc<dyn Sink>,
        span: Span,
    ) -> Subscription {
        let wake = Arc::new(Notify::new());
        let busy = Arc::new(WakeHold::new(self.router.pending_count()));
        let subscription = self.router.subscribe(
            patterns.clone(),
            filter.clone(),
            Arc::new(WakeSink {
                wake: wake.clone(),
                busy: busy.clone(),
            }),
            Consumer::Wake,
            None,
            span.clone(),
        );
        let stopped = subscription.cancel_flag();
        let member = Member {
            id: uuid::Uuid::now_v7().to_string(),
            store: self.store.clone(),
            options: group,
            patterns,
            filter,
            sink,
            wake: wake.clone(),
            busy,
            stopped: stopped.clone(),
            metrics: self.metrics.clone(),
            poll_interval: self.poll_interval,
        };
        let task = self.runtime.spawn(Arc::new(member).run().instrument(span));
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        // Members that were unsubscribed have ended: forget them.
        running.retain(|m| !m.task.is_finished());
        running.push(RunningMember {
            stopped,
            wake,
            task,
        });
        subscription
    }

    /// Stops every member and waits until each has given its partitions back.
    pub(crate) async fn stop(&self) {
        let members: Vec<RunningMember> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        // All are told first, so they leave side by side rather than one after another.
        for m in &members {
            m.stopped.store(true, Ordering::SeqCst);
            m.wake.notify_one();
        }
        for m in members {
            let _ = m.task.await;
        }
    }
}
