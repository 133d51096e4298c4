//! Durable consumer groups: `subscribe(…, { group })`. Members of a group, in any instance sharing
//! the store, split the group's partitions (events keyed by projectId by default) under leases and
//! read the log from each partition's checkpoint, so every event is handled by one member, in
//! order per partition, at least once. A failing event is retried with backoff, then dead-lettered.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn, Instrument};

// Re-exported: `GroupOptions.backoff` is public, and so was this path.
pub use crate::backoff::Backoff;
use crate::error::{EventBusError, Result};
use crate::event::SharedEvent;
use crate::in_flight::{Held, WakeHold};
use crate::metrics::{Metrics, SinkKind};
use crate::pattern::{any_matches, Pattern};
use crate::query::Query;
use crate::router::{even_split, HandlerFailure, Sink, StartFrom, SubscriberFilter};
use crate::store::group_bell::Rebalance;
use crate::store::groups::{DeadLetter, Lease};
use crate::store::Store;

mod members;
mod options;

pub(crate) use members::Members;
// For the addon's deadLetters and retryDeadLetter.
#[cfg(feature = "napi")]
pub(crate) use options::{parse_dead_letter_id, DeadLetterFilter};
pub use options::{parse_subscribe_options, GroupOptions, PartitionKey};

/// Events read from the log per round.
const PAGE: usize = 500;

/// The partition of `event` among `partitions` (FNV-1a of the key; events without one share
/// partition 0's hash of the empty string).
pub fn partition_of(event: &SharedEvent, key: PartitionKey, partitions: u32) -> u32 {
    let e = &event.event;
    let value = match key {
        PartitionKey::ProjectId => e.project_id.as_deref(),
        PartitionKey::TenantId => e.tenant_id.as_deref(),
        PartitionKey::UserId => e.user_id.as_deref(),
        PartitionKey::Type => Some(e.event_type.as_str()),
    }
    .unwrap_or("");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u32
}

/// One member of a group in this instance.
pub(crate) struct Member {
    pub id: String,
    pub store: Arc<dyn Store>,
    pub options: GroupOptions,
    pub patterns: Vec<Pattern>,
    pub filter: SubscriberFilter,
    pub sink: Arc<dyn Sink>,
    /// Rung when matching events commit (by the router) and on unsubscribe/close.
    pub wake: Arc<Notify>,
    /// Counts a ring as pending work until this member has caught up, so the host process
    /// stays alive for events it is about to handle.
    pub busy: Arc<WakeHold>,
    pub stopped: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
    pub poll_interval: Duration,
}

struct CloseOnDrop<'a>(&'a WakeHold);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Member {
    fn stopping(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Sleeps for `d`, or less when woken or stopped. At most a poll interval: `unsubscribe` sets
    /// the stop flag without waking the member, and a member holding nothing would otherwise
    /// leave only at its next renewal.
    async fn pause(&self, d: Duration) {
        if !self.stopping() {
            let _ = tokio::time::timeout(d.min(self.poll_interval), self.wake.notified()).await;
        }
    }

    /// Runs until stopped; then gives its partitions back and returns.
    pub(crate) async fn run(self: Arc<Self>) {
        // However the member ends, no ring stays counted as pending work.
        let _closing = CloseOnDrop(&self.busy);
        let groups = self.store.groups();
        let name = self.options.name.clone();
        let Some(partitions) = self.join().await else {
            return;
        };
        let renew_every = self.options.lease / 3;
        // Rung when another member joins, gives partitions back or leaves: claim at once.
        let rebalance = Rebalance::new(self.wake.clone());
        groups.bell().listen(&name, &rebalance);
        let mut announced = false;
        let mut owned: BTreeMap<u32, u64> = BTreeMap::new();
        // Partitions whose failed event is being retried (in its own task): their later events
        // wait, the member's other partitions go on.
        let mut parked: HashMap<u32, JoinHandle<Option<u64>>> = HashMap::new();
        let mut next_claim = tokio::time::Instant::now();
        // The ring being answered; let go once caught up (nothing left to handle or retry).
        let mut answering: Option<Held> = None;
        while !self.stopping() {
            if let Some(ring) = self.busy.take() {
                answering = Some(ring);
            }
            if rebalance.take() {
                next_claim = tokio::time::Instant::now();
            }
            if tokio::time::Instant::now() >= next_claim {
                next_claim = tokio::time::Instant::now() + renew_every;
                // Claims run between rounds, so every event handled so far is checkpointed and
                // a partition given back here is taken over from where this member stopped.
                let retrying: Vec<u32> = parked.keys().copied().collect();
                match groups
                    .claim(&name, &self.id, self.options.lease, &retrying)
                    .await
                {
                    Ok(leases) => {
                        let before: Vec<u32> = owned.keys().copied().collect();
                        owned = leases.iter().map(|l| (l.partition, l.checkpoint)).collect();
                        let gave_back = before.iter().any(|p| !owned.contains_key(p));
                        if before != owned.keys().copied().collect::<Vec<_>>() {
                            debug!(group = %name, member = %self.id, partitions = %partition_list(&owned), "partitions assigned");
                        }
                        // A joiner rings once its presence is stored (the others' fair share
                        // shrinks); a giver rings so that takers claim what it freed.
                        if !announced || gave_back {
                            announced = true;
                            self.ring(&rebalance).await;
                        }
                        self.retry_dead_letters().await;
                    }
                    Err(e) => {
                        warn!(group = %name, error = %e, "renewing group leases failed; retrying");
                        // Without a renewed lease another member may take over: stop processing.
                        owned.clear();
                        next_claim = tokio::time::Instant::now() + Duration::from_millis(500);
                    }
                }
            }
            if let Err(e) = self.unpark(&mut parked, &mut owned).await {
                warn!(group = %name, error = %e, "committing retried events failed; retrying");
            }
            let active: BTreeMap<u32, u64> = owned
                .iter()
                .filter(|(p, _)| !parked.contains_key(p))
                .map(|(&p, &cp)| (p, cp))
                .collect();
            if active.is_empty() {
                if parked.is_empty() {
                    drop(answering.take());
                }
                self.pause(next_claim - tokio::time::Instant::now()).await;
                continue;
            }
            match self
                .round(&active, &mut owned, &mut parked, partitions)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    if parked.is_empty() {
                        drop(answering.take());
                    }
                    let wait = (next_claim - tokio::time::Instant::now()).min(self.poll_interval);
                    self.pause(wait).await;
                }
                Err(e) => {
                    // A failing store is not work in hand: the process may exit meanwhile.
                    drop(answering.take());
                    warn!(group = %name, error = %e, "consumer group round failed; retrying");
                    self.pause(Duration::from_millis(500)).await;
                }
            }
        }
        for (_, task) in parked.drain() {
            let _ = task.await;
        }
        match groups.leave(&name, &self.id).await {
            // The others take over its partitions now rather than at their next renewal.
            Ok(()) => self.ring(&rebalance).await,
            Err(e) => {
                warn!(group = %name, error = %e, "leaving the consumer group failed; its leases will expire")
            }
        }
    }

    /// Rings the group's other members; if that fails they rebalance at their next renewal.
    async fn ring(&self, rebalance: &Arc<Rebalance>) {
        if let Err(e) = self
            .store
            .groups()
            .ring(&self.options.name, rebalance)
            .await
        {
            warn!(group = %self.options.name, error = %e, "ringing the consumer group failed; members rebalance at their next lease renewal");
        }
    }

    /// Creates the group unless it exists; returns its partition count (None if stopped first).
    async fn join(&self) -> Option<u32> {
        let start = self.start_position().await?;
        while !self.stopping() {
            match self
                .store
                .groups()
                .ensure_group(&self.options.name, self.options.partitions, start)
                .await
            {
                Ok(n) => {
                    info!(group = %self.options.name, member = %self.id, partitions = n, "joined consumer group");
                    return Some(n);
                }
                Err(e) => {
                    warn!(group = %self.options.name, error = %e, "joining the consumer group failed; retrying");
                    self.pause(Duration::from_secs(1)).await;
                }
            }
        }
        None
    }

    /// Takes back partitions whose retried event is settled, and commits their checkpoints.
    async fn unpark(
        &self,
        parked: &mut HashMap<u32, JoinHandle<Option<u64>>>,
        owned: &mut BTreeMap<u32, u64>,
    ) -> Result<()> {
        let settled: Vec<u32> = parked
            .iter()
            .filter(|(_, task)| task.is_finished())
            .map(|(&p, _)| p)
            .collect();
        let mut checkpoints = Vec::new();
        for p in settled {
            let Some(task) = parked.remove(&p) else {
                continue;
            };
            if let (Ok(Some(reached)), Some(cp)) = (task.await, owned.get_mut(&p)) {
                *cp = (*cp).max(reached);
                checkpoints.push(Lease {
                    partition: p,
                    checkpoint: *cp,
                });
            }
        }
        self.commit(&checkpoints, owned).await
    }

    /// Commits checkpoints; drops partitions another member has taken over meanwhile.
    async fn commit(&self, checkpoints: &[Lease], owned: &mut BTreeMap<u32, u64>) -> Result<()> {
        if checkpoints.is_empty() {
            return Ok(());
        }
        let lost = self
            .store
            .groups()
            .commit(&self.options.name, &self.id, checkpoints)
            .await?;
        for p in lost {
            debug!(group = %self.options.name, partition = p, "partition taken over by another member");
            owned.remove(&p);
        }
        Ok(())
    }

    async fn start_position(&self) -> Option<u64> {
        loop {
            let found = match self.options.start {
                StartFrom::Beginning => Ok(0),
                StartFrom::After(p) => Ok(p),
                StartFrom::Now => self.store.head_position().await,
            };
            match found {
                Ok(p) => return Some(p),
                Err(e) => {
                    warn!(error = %e, "reading the log head failed; retrying");
                    if self.stopping() {
                        return None;
                    }
                    self.pause(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Reads one page after the lowest checkpoint of the `active` partitions and handles it.
    /// Returns whether the page was full (more may be waiting).
    async fn round(
        self: &Arc<Self>,
        active: &BTreeMap<u32, u64>,
        owned: &mut BTreeMap<u32, u64>,
        parked: &mut HashMap<u32, JoinHandle<Option<u64>>>,
        partitions: u32,
    ) -> Result<bool> {
        let Some(&from) = active.values().min() else {
            return Ok(false);
        };
        let query = Query {
            types: self.patterns.clone(),
            project_id: self.filter.project_id.clone(),
            tenant_id: self.filter.tenant_id.clone(),
            after_position: Some(from),
            limit: PAGE,
            ..Query::default()
        };
        let mut page = self.store.query(&query).await?;
        page.truncate(PAGE);
        let Some(last) = page.last().map(|e| e.position) else {
            return Ok(false);
        };
        let full = page.len() == PAGE;
        let mut work: BTreeMap<u32, Vec<SharedEvent>> = BTreeMap::new();
        for event in page {
            if !any_matches(&self.patterns, &event.event.event_type) {
                continue;
            }
            let p = partition_of(&event, self.options.partition_by, partitions);
            if active.get(&p).is_some_and(|&cp| event.position > cp) {
                work.entry(p).or_default().push(event);
            }
        }
        // Partitions run side by side; within one, events go in order.
        let results = futures_util::future::join_all(
            work.into_iter()
                .map(|(p, events)| async move { (p, self.handle_partition(&events).await) }),
        )
        .await;
        // Every active partition finished the page, except where an event failed or it stopped.
        let mut done: BTreeMap<u32, u64> = active.keys().map(|&p| (p, last)).collect();
        for (p, outcome) in results {
            done.insert(p, outcome.reached);
            if let Some((event, message)) = outcome.failed {
                let member = self.clone();
                let task = tokio::spawn(
                    async move {
                        let settled = member.settle_failure(event, message).await;
                        member.wake.notify_one();
                        settled
                    }
                    .in_current_span(),
                );
                parked.insert(p, task);
            }
        }
        let checkpoints: Vec<Lease> = done
            .iter()
            .filter(|(p, &cp)| owned.get(p).is_some_and(|&old| cp > old))
            .map(|(&partition, &checkpoint)| Lease {
                partition,
                checkpoint,
            })
            .collect();
        for lease in &checkpoints {
            owned.insert(lease.partition, lease.checkpoint);
        }
        self.commit(&checkpoints, owned).await?;
        Ok(full)
    }

    /// Calls the group's handler for `events` (it stops at the first failure) and counts what it
    /// did: events handled, the failure, each handled event's time.
    async fn call_handler(&self, events: &[SharedEvent]) -> Vec<HandlerFailure> {
        let span = tracing::debug_span!(
            "process",
            messaging.system = crate::trace_context::MESSAGING_SYSTEM,
            messaging.operation.type = "process",
            messaging.consumer.group.name = self.options.name.as_str(),
            messaging.destination.name = events.first().map(|e| e.event.event_type.as_str()),
            messaging.batch.message_count = events.len(),
            messaging.message.id = tracing::field::Empty,
            otel.name = tracing::field::Empty,
            otel.kind = "consumer",
        );
        crate::router::process_span(&span, events);
        let started = std::time::Instant::now();
        let handled = self.sink.deliver_timed(events).instrument(span).await;
        let (ok, failed) = match first_failure(events, &handled.failures) {
            None => (events.len(), 0),
            Some((index, _)) => (index, 1),
        };
        let seconds = handled
            .seconds
            .unwrap_or_else(|| even_split(started.elapsed(), ok + failed));
        Metrics::add(&self.metrics.delivered, ok as u64);
        self.metrics.delivered_to(SinkKind::Group, ok as u64);
        let label = self.metrics.consumer(&self.options.name);
        self.metrics.handled(&label, &seconds, failed as u64);
        handled.failures
    }

    /// Handles a partition's events in order, up to the first failure or until the member stops.
    async fn handle_partition(&self, events: &[SharedEvent]) -> PartitionOutcome {
        let mut outcome = PartitionOutcome {
            reached: 0,
            failed: None,
        };
        if self.stopping() {
            return outcome;
        }
        let failures = self.call_handler(events).await;
        Metrics::add(&self.metrics.delivery_batches, 1);
        match first_failure(events, &failures) {
            None => {
                outcome.reached = events.last().map_or(0, |e| e.position);
            }
            Some((index, message)) => {
                if index > 0 {
                    outcome.reached = events[index - 1].position;
                }
                outcome.failed = Some((events[index].clone(), message));
            }
        }
        outcome
    }

    /// Retries a failed event and dead-letters it when the attempts run out. Returns the
    /// position its partition may move past, or None to deliver it again later.
    async fn settle_failure(&self, event: SharedEvent, message: String) -> Option<u64> {
        match self.retry(&event, 1, message).await {
            Retried::Delivered { .. } => Some(event.position),
            Retried::GaveUp { calls, error } => match self
                .store
                .groups()
                .add_dead_letter(&self.options.name, &event, calls, &error)
                .await
            {
                Ok(id) => {
                    Metrics::add(&self.metrics.dead_lettered, 1);
                    warn!(group = %self.options.name, position = event.position, attempts = calls, dead_letter = id, error = %error, "event dead-lettered");
                    Some(event.position)
                }
                Err(e) => {
                    warn!(error = %e, "recording a dead letter failed; the event will be delivered again");
                    None
                }
            },
            Retried::Stopped => None,
        }
    }

    /// Calls the handler again for `event` (after `calls` failed calls) until it succeeds, the
    /// attempts run out, or the member stops.
    async fn retry(&self, event: &SharedEvent, mut calls: u32, mut error: String) -> Retried {
        while calls < self.options.max_attempts {
            let wake_at = tokio::time::Instant::now() + self.options.backoff.delay(calls);
            // Sleeps in short steps so that stopping the member does not wait out a long backoff.
            while tokio::time::Instant::now() < wake_at {
                if self.stopping() {
                    return Retried::Stopped;
                }
                let step = wake_at - tokio::time::Instant::now();
                tokio::time::sleep(step.min(Duration::from_millis(100))).await;
            }
            if self.stopping() {
                return Retried::Stopped;
            }
            Metrics::add(&self.metrics.group_retries, 1);
            let failures = self.call_handler(std::slice::from_ref(event)).await;
            calls += 1;
            match first_failure(std::slice::from_ref(event), &failures) {
                None => return Retried::Delivered { calls },
                Some((_, message)) => error = message,
            }
        }
        Retried::GaveUp { calls, error }
    }

    /// Re-delivers dead letters of this group that `retryDeadLetter` marked.
    async fn retry_dead_letters(&self) {
        let groups = self.store.groups();
        let letters = match groups
            .claim_retries(&self.options.name, &self.id, self.options.lease)
            .await
        {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "claiming dead letters to retry failed");
                return;
            }
        };
        for letter in letters {
            let outcome = match self.dead_letter_event(&letter).await {
                Ok(event) => {
                    let failures = self.call_handler(std::slice::from_ref(&event)).await;
                    match first_failure(std::slice::from_ref(&event), &failures) {
                        None => (true, 1, String::new()),
                        Some((_, message)) => {
                            match self.retry(&event, 1, message).await {
                                Retried::Delivered { calls } => (true, calls, String::new()),
                                Retried::GaveUp { calls, error } => (false, calls, error),
                                // Its claim expires and another member takes it.
                                Retried::Stopped => return,
                            }
                        }
                    }
                }
                Err(e) => (false, 0, format!("the event could not be read: {e}")),
            };
            let (delivered, calls, error) = outcome;
            if let Err(e) = groups
                .settle_retry(letter.id, delivered, calls, &error)
                .await
            {
                warn!(error = %e, "recording a dead-letter retry failed");
            }
        }
    }

    /// The dead letter's event, re-read from the log (or its archive) by position.
    async fn dead_letter_event(&self, letter: &DeadLetter) -> Result<SharedEvent> {
        let query = Query {
            after_position: Some(letter.position.saturating_sub(1)),
            limit: 1,
            include_archived: true,
            ..Query::default()
        };
        self.store
            .query(&query)
            .await?
            .into_iter()
            .find(|e| e.position == letter.position)
            .ok_or_else(|| {
                EventBusError::NotFound(format!("event at position {} is gone", letter.position))
            })
    }
}

/// `0,3,7`: partitions as a log field.
fn partition_list(owned: &BTreeMap<u32, u64>) -> String {
    owned
        .keys()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

struct PartitionOutcome {
    /// Last position handled (0: none).
    reached: u64,
    /// The event that failed, and why; the partition waits for its retries.
    failed: Option<(SharedEvent, String)>,
}

enum Retried {
    Delivered { calls: u32 },
    GaveUp { calls: u32, error: String },
    Stopped,
}

/// Index and message of the first failed event of `batch` (a group sink stops at its first
/// failure, so events after it were not handled).
fn first_failure(batch: &[SharedEvent], failures: &[HandlerFailure]) -> Option<(usize, String)> {
    let first = failures.iter().min_by_key(|f| f.position)?;
    let index = batch
        .iter()
        .position(|e| e.position == first.position)
        .unwrap_or(0);
    Some((index, first.message.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        let event = |project: &str| {
            let e = crate::event::Event::from_json(&format!(
                r#"{{"type":"a.b","payload":{{}},"projectId":"{project}"}}"#
            ))
            .unwrap();
            Arc::new(crate::event::StoredEvent::new(e, 1))
        };
        let a = partition_of(&event("p-1"), PartitionKey::ProjectId, 16);
        assert_eq!(a, partition_of(&event("p-1"), PartitionKey::ProjectId, 16));
        let used: std::collections::HashSet<u32> = (0..200)
            .map(|i| partition_of(&event(&format!("p-{i}")), PartitionKey::ProjectId, 16))
            .collect();
        assert_eq!(used.len(), 16);
    }
}
