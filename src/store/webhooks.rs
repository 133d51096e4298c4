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

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Retrying,
    Delivered,
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
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
pub struct EndpointTally {
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
    pub fn changes(&self) -> bool {
        self.reset || self.dead > 0 || self.gone
    }
}

/// Tallies outcomes per endpoint, in the order endpoints first appear; within an endpoint, in
/// the order given (a delivered one resets the count, dead ones add to it).
pub fn tally(outcomes: &[Outcome]) -> Vec<EndpointTally> {
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

    /// None when there is no such endpoint. Re-enabling resets the failure count.
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
    /// which is disabled after `disable_after` in a row (or at once on 410). Returns the
    /// endpoints this disabled.
    async fn record(&self, outcomes: &[Outcome], disable_after: u32) -> Result<Vec<Disabled>>;

    /// Newest first.
    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>>;

    /// Makes a delivery due again now (its history is kept); false when there is none.
    async fn replay(&self, delivery_id: u64) -> Result<bool>;

    /// Makes an endpoint's dead deliveries (created at or after `since`) due again; returns how many.
    async fn replay_failed(&self, endpoint_id: Uuid, since: Option<DateTime<Utc>>) -> Result<u64>;
}
