//! Webhook endpoints and the delivery outbox in memory, kept under the log's lock (see `State`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::MemoryStore;
use crate::error::{EventBusError, Result};
use crate::event::SharedEvent;
use crate::pattern::{any_matches, Pattern};
use crate::store::webhooks::{
    tally, Attempt, Delivery, DeliveryQuery, DeliveryStatus, Disabled, DueDelivery, Endpoint,
    EndpointPatch, EndpointTally, NewEndpoint, Next, OutboxDepth, Outcome, WebhookStore,
};

#[derive(Default)]
pub(super) struct Webhooks {
    /// By id; listed by (created_at, id) like the SQL stores.
    endpoints: HashMap<Uuid, MemEndpoint>,
    /// By id, ids increasing from 1.
    deliveries: BTreeMap<u64, MemDelivery>,
    last_delivery: u64,
}

struct MemEndpoint {
    endpoint: Endpoint,
    /// `endpoint.events` parsed: what the SQL stores' `type_regex` matches.
    patterns: Vec<Pattern>,
}

struct MemDelivery {
    endpoint_id: Uuid,
    position: u64,
    status: DeliveryStatus,
    attempts: u32,
    next_attempt_at: DateTime<Utc>,
    lease_until: Option<DateTime<Utc>>,
    last_status: Option<u16>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// By attempt number.
    attempt_log: BTreeMap<u32, Attempt>,
}

impl Webhooks {
    /// The outbox write for a fresh event: one pending delivery per matching enabled endpoint.
    pub(super) fn outbox(&mut self, event: &SharedEvent) {
        if self.endpoints.is_empty() {
            return;
        }
        let e = &event.event;
        let mut matching: Vec<&MemEndpoint> = self
            .endpoints
            .values()
            .filter(|w| {
                let scope_ok =
                    |want: &Option<String>, have: &Option<String>| want.is_none() || want == have;
                w.endpoint.enabled
                    && scope_ok(&w.endpoint.tenant_id, &e.tenant_id)
                    && scope_ok(&w.endpoint.project_id, &e.project_id)
                    && any_matches(&w.patterns, &e.event_type)
            })
            .collect();
        matching.sort_by_key(|w| (w.endpoint.created_at, w.endpoint.id));
        let ids: Vec<Uuid> = matching.iter().map(|w| w.endpoint.id).collect();
        let now = Utc::now();
        for endpoint_id in ids {
            self.last_delivery += 1;
            self.deliveries.insert(
                self.last_delivery,
                MemDelivery {
                    endpoint_id,
                    position: event.position,
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    next_attempt_at: now,
                    lease_until: None,
                    last_status: None,
                    last_error: None,
                    created_at: now,
                    updated_at: now,
                    attempt_log: BTreeMap::new(),
                },
            );
        }
    }

    /// Makes a delivery due now (its history is kept).
    fn make_due(d: &mut MemDelivery, now: DateTime<Utc>) {
        d.status = DeliveryStatus::Pending;
        d.next_attempt_at = now;
        d.lease_until = None;
        d.updated_at = now;
    }
}

#[async_trait]
impl WebhookStore for MemoryStore {
    async fn outbox_depth(&self) -> Result<OutboxDepth> {
        let state = self.state();
        let mut depth = OutboxDepth::default();
        for d in state.webhooks.deliveries.values() {
            depth.add(d.status.as_str(), 1);
        }
        Ok(depth)
    }

    async fn insert_endpoint(&self, e: &NewEndpoint) -> Result<Endpoint> {
        let patterns = Pattern::parse_all(&e.events)?;
        let mut state = self.state();
        if state.webhooks.endpoints.contains_key(&e.id) {
            return Err(EventBusError::StoreUnavailable(format!(
                "registering a webhook endpoint failed: id {} already exists",
                e.id
            )));
        }
        let now = Utc::now();
        let endpoint = Endpoint {
            id: e.id,
            url: e.url.clone(),
            events: e.events.clone(),
            tenant_id: e.tenant_id.clone(),
            project_id: e.project_id.clone(),
            description: e.description.clone(),
            secret: e.secret.clone(),
            previous_secret: None,
            previous_secret_until: None,
            enabled: true,
            disabled_reason: None,
            consecutive_failures: 0,
            created_at: now,
            updated_at: now,
        };
        state.webhooks.endpoints.insert(
            e.id,
            MemEndpoint {
                endpoint: endpoint.clone(),
                patterns,
            },
        );
        Ok(endpoint)
    }

    async fn endpoints(&self, tenant_id: Option<&str>) -> Result<Vec<Endpoint>> {
        let state = self.state();
        let mut endpoints: Vec<Endpoint> = state
            .webhooks
            .endpoints
            .values()
            .filter(|w| tenant_id.is_none() || w.endpoint.tenant_id.as_deref() == tenant_id)
            .map(|w| w.endpoint.clone())
            .collect();
        endpoints.sort_by_key(|e| (e.created_at, e.id));
        Ok(endpoints)
    }

    async fn endpoint(&self, id: Uuid) -> Result<Option<Endpoint>> {
        Ok(self
            .state()
            .webhooks
            .endpoints
            .get(&id)
            .map(|w| w.endpoint.clone()))
    }

    async fn update_endpoint(&self, id: Uuid, patch: &EndpointPatch) -> Result<Option<Endpoint>> {
        let patterns = patch
            .events
            .as_ref()
            .map(|(events, _)| Pattern::parse_all(events))
            .transpose()?;
        let mut state = self.state();
        let Some(w) = state.webhooks.endpoints.get_mut(&id) else {
            return Ok(None);
        };
        let e = &mut w.endpoint;
        if let Some(url) = &patch.url {
            e.url = url.clone();
        }
        if let (Some((events, _)), Some(patterns)) = (&patch.events, patterns) {
            e.events = events.clone();
            w.patterns = patterns;
        }
        if let Some(switch) = patch.switch() {
            e.enabled = switch.enabled;
            e.disabled_reason = switch.disabled_reason.map(Into::into);
            if switch.reset_failures {
                e.consecutive_failures = 0;
            }
        }
        if let Some(description) = &patch.description {
            e.description = description.clone();
        }
        if let Some((secret, until)) = &patch.rotate {
            e.previous_secret = Some(std::mem::replace(&mut e.secret, secret.clone()));
            e.previous_secret_until = Some(*until);
        }
        e.updated_at = Utc::now();
        Ok(Some(e.clone()))
    }

    async fn remove_endpoint(&self, id: Uuid) -> Result<bool> {
        let mut state = self.state();
        let webhooks = &mut state.webhooks;
        if webhooks.endpoints.remove(&id).is_none() {
            return Ok(false);
        }
        webhooks.deliveries.retain(|_, d| d.endpoint_id != id);
        Ok(true)
    }

    async fn claim_due(
        &self,
        limit: usize,
        lease: Duration,
        skip: &[Uuid],
    ) -> Result<Vec<DueDelivery>> {
        let mut state = self.state();
        let now = Utc::now();
        let lease_until = chrono::Duration::from_std(lease)
            .ok()
            .and_then(|lease| now.checked_add_signed(lease))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let webhooks = &state.webhooks;
        let mut due: Vec<(DateTime<Utc>, u64)> = webhooks
            .deliveries
            .iter()
            .filter(|(_, d)| {
                matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Retrying)
                    && d.next_attempt_at <= now
                    && d.lease_until.is_none_or(|l| l <= now)
                    && !skip.contains(&d.endpoint_id)
                    && webhooks
                        .endpoints
                        .get(&d.endpoint_id)
                        .is_some_and(|w| w.endpoint.enabled)
            })
            .map(|(id, d)| (d.next_attempt_at, *id))
            .collect();
        due.sort();
        due.truncate(limit);
        let mut claimed = Vec::with_capacity(due.len());
        for (_, id) in due {
            let (endpoint_id, position, attempts) = {
                let Some(d) = state.webhooks.deliveries.get_mut(&id) else {
                    continue;
                };
                d.lease_until = Some(lease_until);
                (d.endpoint_id, d.position, d.attempts)
            };
            // A delivery whose event is gone (purged from the archive) stays leased and is
            // skipped, as on PostgreSQL.
            let Some(event) = state.event_at(position) else {
                continue;
            };
            let Some(w) = state.webhooks.endpoints.get(&endpoint_id) else {
                continue;
            };
            let e = &w.endpoint;
            let previous = e
                .previous_secret
                .clone()
                .filter(|_| e.previous_secret_until.is_some_and(|until| until > now));
            claimed.push(DueDelivery {
                id,
                attempts,
                endpoint_id,
                url: e.url.clone(),
                secrets: std::iter::once(e.secret.clone()).chain(previous).collect(),
                event,
            });
        }
        claimed.sort_by_key(|d| d.id);
        Ok(claimed)
    }

    async fn record(&self, outcomes: &[Outcome], disable_after: u32) -> Result<Vec<Disabled>> {
        let mut state = self.state();
        let webhooks = &mut state.webhooks;
        let now = Utc::now();
        for o in outcomes {
            // A delivery removed meanwhile (with its endpoint) has nothing to record.
            let Some(d) = webhooks.deliveries.get_mut(&o.delivery_id) else {
                continue;
            };
            d.attempt_log
                .entry(o.attempt.attempt)
                .or_insert_with(|| o.attempt.clone());
            match o.next {
                Next::Delivered => d.status = DeliveryStatus::Delivered,
                Next::RetryAt(at) => {
                    d.status = DeliveryStatus::Retrying;
                    d.next_attempt_at = at;
                }
                Next::Dead | Next::Gone => d.status = DeliveryStatus::Dead,
            }
            d.attempts = o.attempt.attempt;
            d.lease_until = None;
            d.last_status = o.attempt.status_code;
            d.last_error = o.attempt.error.clone();
            d.updated_at = now;
        }
        let mut disabled = Vec::new();
        for t in tally(outcomes).into_iter().filter(EndpointTally::changes) {
            let Some(w) = webhooks.endpoints.get_mut(&t.endpoint_id) else {
                continue;
            };
            let e = &mut w.endpoint;
            let verdict = t.verdict(e.health(), disable_after);
            e.consecutive_failures = verdict.consecutive_failures;
            e.updated_at = now;
            if let Some(reason) = verdict.disable {
                e.enabled = false;
                e.disabled_reason = Some(reason.clone());
                disabled.push(Disabled {
                    endpoint_id: t.endpoint_id,
                    reason,
                });
            }
        }
        Ok(disabled)
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>> {
        let state = self.state();
        let position = match query.event_id {
            None => None,
            Some(id) => match state.position_of(id) {
                Some(position) => Some(position),
                None => return Ok(Vec::new()),
            },
        };
        Ok(state
            .webhooks
            .deliveries
            .iter()
            .rev()
            .filter(|(_, d)| {
                query.endpoint_id.is_none_or(|id| d.endpoint_id == id)
                    && query.status.is_none_or(|s| d.status == s)
                    && position.is_none_or(|p| d.position == p)
            })
            .take(query.limit)
            .map(|(id, d)| {
                let event = state.event_at(d.position);
                Delivery {
                    id: *id,
                    endpoint_id: d.endpoint_id,
                    position: d.position,
                    event_id: event.as_ref().map(|e| e.event.id),
                    event_type: event.map(|e| e.event.event_type.clone()),
                    status: d.status,
                    attempts: d.attempts,
                    next_attempt_at: matches!(
                        d.status,
                        DeliveryStatus::Pending | DeliveryStatus::Retrying
                    )
                    .then_some(d.next_attempt_at),
                    last_status: d.last_status,
                    last_error: d.last_error.clone(),
                    created_at: d.created_at,
                    updated_at: d.updated_at,
                    attempt_log: d.attempt_log.values().cloned().collect(),
                }
            })
            .collect())
    }

    async fn replay(&self, delivery_id: u64) -> Result<bool> {
        let mut state = self.state();
        let Some(d) = state.webhooks.deliveries.get_mut(&delivery_id) else {
            return Ok(false);
        };
        Webhooks::make_due(d, Utc::now());
        Ok(true)
    }

    async fn replay_failed(&self, endpoint_id: Uuid, since: Option<DateTime<Utc>>) -> Result<u64> {
        let mut state = self.state();
        let now = Utc::now();
        let mut count = 0;
        for d in state.webhooks.deliveries.values_mut() {
            if d.endpoint_id == endpoint_id
                && d.status == DeliveryStatus::Dead
                && since.is_none_or(|since| d.created_at >= since)
            {
                Webhooks::make_due(d, now);
                count += 1;
            }
        }
        Ok(count)
    }
}
