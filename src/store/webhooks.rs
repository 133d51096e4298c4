//! Webhook state beside the log: endpoints, the delivery outbox (rows written in the event's own
//! transaction) and the attempt history. The transport (src/transport/webhook) sends; this stores.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::Result;
use crate::event::SharedEvent;

/// An endpoint as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub tenant_id: Option<String>,
    pub project_id: Option<String>,
    pub description: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub consecutive_failures: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A validated endpoint to insert.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    /// The patterns as one anchored regex, matched by the outbox trigger.
    pub type_regex: String,
    pub tenant_id: Option<String>,
    pub project_id: Option<String>,
    pub description: Option<String>,
    pub secret: String,
}

/// A validated change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    /// Patterns and their regex.
    pub events: Option<(Vec<String>, String)>,
    pub enabled: Option<bool>,
    pub description: Option<Option<String>>,
    /// A new secret; the current one keeps signing until the given time.
    pub rotate: Option<(String, DateTime<Utc>)>,
}

/// How many deliveries wait in the outbox (pending, retrying) or were given up on (dead).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    pub pending: u64,
    pub retrying: u64,
    pub dead: u64,
}

impl OutboxDepth {
    /// Adds `n` deliveries of `status` (a stored status name; delivered ones are not counted).
    pub(crate) fn add(&mut self, status: &str, n: u64) {
        match DeliveryStatus::parse(status) {
            Some(DeliveryStatus::Pending) => self.pending += n,
            Some(DeliveryStatus::Retrying) => self.retrying += n,
            Some(DeliveryStatus::Dead) => self.dead += n,
            Some(DeliveryStatus::Delivered) | None => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Retrying,
    Delivered,
    Dead,
}

impl DeliveryStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "retrying" => Some(DeliveryStatus::Retrying),
            "delivered" => Some(DeliveryStatus::Delivered),
            "dead" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

/// A delivery due now, claimed by a worker under a lease, with what it needs to send.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: u64,
    /// Attempts made before this one.
    pub attempts: u32,
    pub endpoint_id: Uuid,
    pub url: String,
    /// Secrets to sign with: the current one, and the previous one while it is still valid.
    pub secrets: Vec<String>,
    pub event: SharedEvent,
}

/// One HTTP attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: u32,
    /// The start of the response body (truncated).
    pub response_body: Option<String>,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    Delivered,
    RetryAt(DateTime<Utc>),
    Dead,
    /// 410 Gone: dead, and the endpoint is disabled.
    Gone,
}

/// An attempt's outcome to record.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery_id: u64,
    pub endpoint_id: Uuid,
    pub attempt: Attempt,
    pub next: Next,
}

/// Which deliveries `deliveries()` lists: those matching every filter given, newest first.
#[derive(Debug, Clone)]
pub struct DeliveryQuery {
    pub endpoint_id: Option<Uuid>,
    pub status: Option<DeliveryStatus>,
    /// Only the deliveries of this event.
    pub event_id: Option<Uuid>,
    pub limit: usize,
}

/// A delivery with its history, for `deliveries()`.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: u64,
    pub endpoint_id: Uuid,
    pub position: u64,
    /// The event's id and type, read from its row in the log or the archive (None once it has
    /// been purged from the archive).
    pub event_id: Option<Uuid>,
    pub event_type: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub attempt_log: Vec<Attempt>,
}

/// An endpoint that `record` disabled, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Disabled {
    pub endpoint_id: Uuid,
    pub reason: String,
}

/// What a batch of outcomes does to one endpoint's failure count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndpointTally {
    pub endpoint_id: Uuid,
    /// A delivery succeeded: the count restarts from `dead`.
    pub reset: bool,
    /// Dead deliveries after the last success in the batch.
    pub dead: u32,
    /// The endpoint answered 410 Gone.
    pub gone: bool,
}

impl EndpointTally {
    /// Whether the endpoint row needs to change at all.
    pub(crate) fn changes(&self) -> bool {
        self.reset || self.dead > 0 || self.gone
    }

    /// The new count when the round settles it without the endpoint's state: successes alone
    /// restart it at 0 and disable nothing, so a backend may write that without reading (or
    /// locking) the row. None when `verdict` needs the state.
    pub(crate) fn stateless_count(&self) -> Option<u32> {
        (self.reset && self.dead == 0 && !self.gone).then_some(0)
    }

    /// The failure rule, the one every backend's `record` applies: a success restarts the count
    /// (from the dead deliveries after it), dead deliveries add to it, and an enabled endpoint
    /// is disabled at once by 410 Gone, or when dead deliveries bring the count to
    /// `disable_after`. Only a round with a dead delivery can disable, so the configured
    /// 1..=1_000_000 and a stray 0 alike leave a round of successes alone.
    pub(crate) fn verdict(&self, before: EndpointHealth, disable_after: u32) -> Verdict {
        let consecutive_failures = if self.reset {
            self.dead
        } else {
            before.consecutive_failures.saturating_add(self.dead)
        };
        let threshold = self.dead > 0 && consecutive_failures >= disable_after;
        // A disabled endpoint keeps the reason it was disabled for, and is not reported again.
        let disable = if !before.enabled {
            None
        } else if self.gone {
            Some(GONE_REASON.to_string())
        } else if threshold {
            Some(failures_reason(disable_after))
        } else {
            None
        };
        Verdict {
            consecutive_failures,
            disable,
        }
    }
}

/// The reason stored and reported for an endpoint `record` disabled on 410 Gone.
pub(crate) const GONE_REASON: &str = "the endpoint answered 410 Gone";

/// The reason stored for an endpoint an update disabled.
pub(crate) const UPDATE_REASON: &str = "disabled by update";

/// The reason stored and reported for an endpoint `record` disabled after `disable_after` dead
/// deliveries in a row.
pub(crate) fn failures_reason(disable_after: u32) -> String {
    format!("{disable_after} deliveries in a row failed")
}

/// What the failure rule reads of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct EndpointHealth {
    pub enabled: bool,
    pub consecutive_failures: u32,
}

impl Endpoint {
    /// What the failure rule reads of this endpoint.
    pub(crate) fn health(&self) -> EndpointHealth {
        EndpointHealth {
            enabled: self.enabled,
            consecutive_failures: self.consecutive_failures,
        }
    }
}

/// What a round of outcomes makes of one endpoint (`EndpointTally::verdict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// The new count of dead deliveries in a row.
    pub consecutive_failures: u32,
    /// Set when this round disables the (enabled) endpoint: the reason to store and report.
    /// When None, `enabled` and the stored reason stay as they are.
    pub disable: Option<String>,
}

/// What an update's `enabled` does to the rest of the endpoint (`EndpointPatch::switch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Switch {
    pub enabled: bool,
    /// The reason to store (None clears it).
    pub disabled_reason: Option<&'static str>,
    /// Whether the count of dead deliveries in a row restarts at 0.
    pub reset_failures: bool,
}

impl EndpointPatch {
    /// The update rule: turning an endpoint on is a fresh start (no reason, no failures
    /// counted); turning it off says an update did it and keeps the count. None when the patch
    /// leaves `enabled` alone.
    pub(crate) fn switch(&self) -> Option<Switch> {
        self.enabled.map(|enabled| Switch {
            enabled,
            disabled_reason: (!enabled).then_some(UPDATE_REASON),
            reset_failures: enabled,
        })
    }
}

/// Tallies outcomes per endpoint, in the order endpoints first appear; within an endpoint, in
/// the order given (a delivered one resets the count, dead ones add to it).
pub(crate) fn tally(outcomes: &[Outcome]) -> Vec<EndpointTally> {
    let mut tallies: Vec<EndpointTally> = Vec::new();
    for o in outcomes {
        let i = match tallies.iter().position(|t| t.endpoint_id == o.endpoint_id) {
            Some(i) => i,
            None => {
                tallies.push(EndpointTally {
                    endpoint_id: o.endpoint_id,
                    reset: false,
                    dead: 0,
                    gone: false,
                });
                tallies.len() - 1
            }
        };
        let t = &mut tallies[i];
        match o.next {
            Next::Delivered => {
                t.reset = true;
                t.dead = 0;
            }
            Next::Dead => t.dead = t.dead.saturating_add(1),
            Next::Gone => t.gone = true,
            Next::RetryAt(_) => {}
        }
    }
    tallies
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn insert_endpoint(&self, endpoint: &NewEndpoint) -> Result<Endpoint>;

    /// Every endpoint, or those of one tenant; oldest first.
    async fn endpoints(&self, tenant_id: Option<&str>) -> Result<Vec<Endpoint>>;

    /// Whether any endpoint exists (the workers look for deliveries on every commit only then).
    async fn has_endpoints(&self) -> Result<bool> {
        Ok(!self.endpoints(None).await?.is_empty())
    }

    async fn endpoint(&self, id: Uuid) -> Result<Option<Endpoint>>;

    /// None when there is no such endpoint. Re-enabling resets the failure count
    /// (`EndpointPatch::switch`).
    async fn update_endpoint(&self, id: Uuid, patch: &EndpointPatch) -> Result<Option<Endpoint>>;

    /// Removes the endpoint and its deliveries; false when there was none.
    async fn remove_endpoint(&self, id: Uuid) -> Result<bool>;

    /// Claims up to `limit` due deliveries (pending or retrying, next attempt reached, no live
    /// lease) for `lease`, oldest first. Deliveries of disabled endpoints, and of the endpoints in
    /// `skip` (busy in this worker pool), are not claimed.
    async fn claim_due(
        &self,
        limit: usize,
        lease: Duration,
        skip: &[Uuid],
    ) -> Result<Vec<DueDelivery>>;

    /// Records attempts and what follows each; a dead delivery counts against its endpoint,
    /// which is disabled after `disable_after` in a row (or at once on 410), as
    /// `EndpointTally::verdict` decides. Returns the endpoints this disabled.
    async fn record(&self, outcomes: &[Outcome], disable_after: u32) -> Result<Vec<Disabled>>;

    /// Newest first.
    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>>;

    /// Deliveries in the outbox not yet delivered, by status (for the metrics).
    async fn outbox_depth(&self) -> Result<OutboxDepth>;

    /// Makes a delivery due again now (its history is kept); false when there is none.
    async fn replay(&self, delivery_id: u64) -> Result<bool>;

    /// Makes an endpoint's dead deliveries (created at or after `since`) due again; returns how many.
    async fn replay_failed(&self, endpoint_id: Uuid, since: Option<DateTime<Utc>>) -> Result<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(reset: bool, dead: u32, gone: bool) -> EndpointTally {
        EndpointTally {
            endpoint_id: Uuid::nil(),
            reset,
            dead,
            gone,
        }
    }

    fn health(enabled: bool, consecutive_failures: u32) -> EndpointHealth {
        EndpointHealth {
            enabled,
            consecutive_failures,
        }
    }

    fn outcome(endpoint: u128, next: Next) -> Outcome {
        Outcome {
            delivery_id: 1,
            endpoint_id: Uuid::from_u128(endpoint),
            attempt: Attempt {
                attempt: 1,
                at: DateTime::<Utc>::UNIX_EPOCH,
                status_code: None,
                error: None,
                latency_ms: 0,
                response_body: None,
            },
            next,
        }
    }

    #[test]
    fn tally_counts_dead_deliveries_after_the_last_success_per_endpoint() {
        let later = DateTime::<Utc>::UNIX_EPOCH;
        let t = tally(&[
            outcome(2, Next::Dead),
            outcome(1, Next::Dead),
            outcome(2, Next::Delivered),
            outcome(2, Next::Dead),
            outcome(1, Next::RetryAt(later)),
            outcome(3, Next::RetryAt(later)),
            outcome(1, Next::Gone),
        ]);
        let ids: Vec<Uuid> = t.iter().map(|t| t.endpoint_id).collect();
        assert_eq!(
            ids,
            [2, 1, 3].map(Uuid::from_u128),
            "in order of first appearance"
        );
        assert_eq!((t[0].reset, t[0].dead, t[0].gone), (true, 1, false));
        assert_eq!((t[1].reset, t[1].dead, t[1].gone), (false, 1, true));
        assert!(!t[2].changes(), "retries alone change nothing");
    }

    #[test]
    fn dead_deliveries_add_up_and_a_success_restarts_the_count() {
        let v = round(false, 2, false).verdict(health(true, 5), 50);
        assert_eq!((v.consecutive_failures, v.disable), (7, None));
        let v = round(true, 2, false).verdict(health(true, 5), 50);
        assert_eq!((v.consecutive_failures, v.disable), (2, None));
        let v = round(true, 0, false).verdict(health(true, 49), 50);
        assert_eq!((v.consecutive_failures, v.disable), (0, None));
        let v = round(false, 1, false).verdict(health(true, u32::MAX), 50);
        assert_eq!(v.consecutive_failures, u32::MAX, "saturates");
    }

    #[test]
    fn reaching_the_threshold_disables_with_its_number() {
        let v = round(false, 1, false).verdict(health(true, 2), 3);
        assert_eq!(v.consecutive_failures, 3);
        assert_eq!(v.disable.as_deref(), Some("3 deliveries in a row failed"));
        let v = round(true, 4, false).verdict(health(true, 0), 3);
        assert_eq!(
            v.disable,
            Some(failures_reason(3)),
            "past it, counted after a success"
        );
        let v = round(false, 1, false).verdict(health(true, 1), 3);
        assert_eq!(v.disable, None);
    }

    #[test]
    fn gone_disables_at_once_and_wins_over_the_threshold() {
        let v = round(false, 0, true).verdict(health(true, 0), 50);
        assert_eq!(
            (v.consecutive_failures, v.disable.as_deref()),
            (0, Some(GONE_REASON))
        );
        let v = round(false, 5, true).verdict(health(true, 0), 3);
        assert_eq!(v.disable.as_deref(), Some("the endpoint answered 410 Gone"));
    }

    #[test]
    fn a_disabled_endpoint_is_counted_but_not_disabled_again() {
        let v = round(false, 1, true).verdict(health(false, 3), 3);
        assert_eq!((v.consecutive_failures, v.disable), (4, None));
    }

    #[test]
    fn only_a_round_with_a_dead_delivery_reaches_the_threshold() {
        let v = round(true, 0, false).verdict(health(true, 7), 0);
        assert_eq!((v.consecutive_failures, v.disable), (0, None));
        let v = round(false, 1, false).verdict(health(true, 0), 0);
        assert_eq!(v.disable, Some(failures_reason(0)));
    }

    #[test]
    fn the_stateless_count_is_the_verdict_for_any_state() {
        for (reset, dead, gone) in [
            (true, 0, false),
            (true, 1, false),
            (false, 1, false),
            (false, 0, true),
            (true, 0, true),
        ] {
            let t = round(reset, dead, gone);
            let Some(count) = t.stateless_count() else {
                assert!(dead > 0 || gone, "{t:?} needs no state");
                continue;
            };
            for before in [health(true, 0), health(true, 9), health(false, 9)] {
                for disable_after in [0, 1, 3] {
                    let v = t.verdict(before, disable_after);
                    assert_eq!((v.consecutive_failures, v.disable), (count, None), "{t:?}");
                }
            }
        }
        assert_eq!(
            round(false, 0, false).stateless_count(),
            None,
            "no change: none"
        );
    }

    #[test]
    fn switching_on_is_a_fresh_start_and_off_says_an_update_did_it() {
        let patch = |enabled| EndpointPatch {
            enabled,
            ..Default::default()
        };
        assert_eq!(patch(None).switch(), None);
        assert_eq!(
            patch(Some(true)).switch(),
            Some(Switch {
                enabled: true,
                disabled_reason: None,
                reset_failures: true,
            })
        );
        assert_eq!(
            patch(Some(false)).switch(),
            Some(Switch {
                enabled: false,
                disabled_reason: Some("disabled by update"),
                reset_failures: false,
            })
        );
    }
}
