//! Webhooks: endpoints registered in the store, deliveries from the outbox the store writes with
//! each event, sent by a pool of workers with Standard Webhooks signatures, retried with backoff.

pub(crate) mod dispatcher;
pub mod signing;
pub(crate) mod ssrf;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::config::WebhookConfig;
use crate::error::{EventBusError, Result};
use crate::pattern::Pattern;
use crate::store::webhooks::{
    Delivery, DeliveryQuery, DeliveryStatus, Endpoint, EndpointPatch, NewEndpoint, WebhookStore,
};
use crate::store::Store;

/// How long the previous secret keeps signing after a rotation.
pub(crate) const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);

fn invalid(message: String) -> EventBusError {
    EventBusError::InvalidEvent(message)
}

/// `webhooks.register(…)` as callers write it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RegisterInput {
    pub url: String,
    pub events: Vec<String>,
    pub tenant_id: Option<String>,
    pub project_id: Option<String>,
    pub secret: Option<String>,
    pub description: Option<String>,
}

/// `webhooks.update(id, …)` as callers write it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct UpdateInput {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    pub rotate_secret: Option<bool>,
}

/// Distinguishes `description: null` (clear it) from no `description` (keep it).
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    use serde::Deserialize;
    Option::<String>::deserialize(d).map(Some)
}

/// `webhooks.deliveries({ endpointId, status, eventId, limit })`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DeliveryFilter {
    pub endpoint_id: Option<Uuid>,
    pub status: Option<DeliveryStatus>,
    pub event_id: Option<Uuid>,
    pub limit: Option<usize>,
}

impl RegisterInput {
    pub(crate) fn from_json(text: &str) -> Result<RegisterInput> {
        crate::json_input::parse_object(text, "webhook endpoint", "").map_err(invalid)
    }
}

impl UpdateInput {
    pub(crate) fn from_json(text: &str) -> Result<UpdateInput> {
        crate::json_input::parse_object(text, "webhook update", "").map_err(invalid)
    }
}

impl DeliveryFilter {
    pub(crate) fn from_json(text: &str) -> Result<DeliveryFilter> {
        crate::json_input::parse_object(text, "deliveries filter", "").map_err(invalid)
    }
}

/// The patterns, checked, and the anchored regex the store matches event types with.
fn patterns(events: &[String]) -> Result<(Vec<String>, String)> {
    if events.is_empty() {
        return Err(invalid("events must list at least one pattern".into()));
    }
    let parsed = Pattern::parse_all(events).map_err(|e| invalid(format!("events: {e}")))?;
    let regex = parsed
        .iter()
        .map(|p| format!("({})", p.to_regex()))
        .collect::<Vec<_>>()
        .join("|");
    Ok((events.to_vec(), regex))
}

fn optional_id(value: Option<String>, field: &str) -> Result<Option<String>> {
    match value {
        Some(v) if v.is_empty() || v.chars().count() > 200 => Err(invalid(format!(
            "{field} must be a non-empty string of at most 200 characters"
        ))),
        other => Ok(other),
    }
}

fn description(value: Option<String>) -> Result<Option<String>> {
    match value {
        Some(d) if d.chars().count() > 1000 => Err(invalid(
            "description must be at most 1000 characters".into(),
        )),
        other => Ok(other),
    }
}

/// Checks an endpoint URL: http(s) only, https unless `allowHttp`, and (unless
/// `allowPrivateNetworks`) a host that does not resolve to a private address.
pub(crate) async fn check_url(url: &str, config: &WebhookConfig) -> Result<String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| invalid(format!("url is not a valid URL: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if config.allow_http => {}
        "http" => {
            return Err(invalid(
                "url must use https (set webhook.allowHttp to allow http)".into(),
            ))
        }
        other => return Err(invalid(format!("url must be http or https, not {other}"))),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("url must not carry credentials".into()));
    }
    if !config.allow_private_networks {
        let port = parsed.port_or_known_default().unwrap_or(443);
        match parsed.host() {
            None => return Err(invalid("url has no host".into())),
            Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(host)) => {
                // A name that does not resolve yet is accepted: it is checked again on every send.
                if let Ok(found) = tokio::net::lookup_host((host, port)).await {
                    let found: Vec<IpAddr> = found.map(|a| a.ip()).collect();
                    if !found.is_empty() && found.iter().all(|ip| ssrf::refusal(*ip).is_some()) {
                        let ip = found[0];
                        return Err(invalid(format!(
                            "url host {host} resolves to {}",
                            ssrf::refused(ip, ssrf::refusal(ip).unwrap_or("refused"))
                        )));
                    }
                }
            }
        }
    }
    Ok(parsed.to_string())
}

fn check_ip(ip: IpAddr) -> Result<()> {
    match ssrf::refusal(ip) {
        Some(why) => Err(invalid(format!("url: {}", ssrf::refused(ip, why)))),
        None => Ok(()),
    }
}

/// Endpoint management on top of the store.
#[derive(Clone)]
pub(crate) struct Webhooks {
    store: Arc<dyn Store>,
    config: WebhookConfig,
    endpoints_hint: Arc<EndpointsHint>,
}

/// Whether endpoints exist, as the webhook workers last saw it, plus a count of registrations
/// made here: a poll that began before a registration must not clear the hint it set.
#[derive(Debug, Default)]
pub(crate) struct EndpointsHint(AtomicU64);

impl EndpointsHint {
    fn new() -> EndpointsHint {
        EndpointsHint(AtomicU64::new(1))
    }

    /// (registrations so far, endpoints known to exist)
    pub(crate) fn get(&self) -> (u64, bool) {
        let v = self.0.load(Ordering::Acquire);
        (v >> 1, v & 1 == 1)
    }

    fn registered(&self) {
        // One more registration, and endpoints exist.
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(((v >> 1) + 1) << 1 | 1)
            });
    }

    /// Records what a poll that began at `seen` found, unless a registration came since.
    pub(crate) fn polled(&self, seen: u64, any: bool) {
        let before = seen << 1 | u64::from(!any);
        let _ = self.0.compare_exchange(
            before,
            seen << 1 | u64::from(any),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

/// An endpoint with the secret to show once (on register and on rotation).
pub(crate) struct WithSecret {
    pub endpoint: Endpoint,
    pub secret: Option<String>,
}

impl Webhooks {
    pub(crate) fn new(store: Arc<dyn Store>, config: WebhookConfig) -> Webhooks {
        Webhooks {
            store,
            config,
            endpoints_hint: Arc::new(EndpointsHint::new()),
        }
    }

    /// Set when an endpoint is registered here: this instance's workers then look for
    /// deliveries on every commit at once, not only after their next poll finds the endpoint.
    pub(crate) fn endpoints_hint(&self) -> Arc<EndpointsHint> {
        self.endpoints_hint.clone()
    }

    fn store(&self) -> &dyn WebhookStore {
        self.store.webhooks()
    }

    pub(crate) async fn register(&self, input: RegisterInput) -> Result<WithSecret> {
        let url = check_url(&input.url, &self.config).await?;
        let (events, type_regex) = patterns(&input.events)?;
        let secret = match input.secret {
            Some(s) => {
                signing::check_secret(&s)?;
                s
            }
            None => signing::generate_secret()?,
        };
        let endpoint = self
            .store()
            .insert_endpoint(&NewEndpoint {
                id: Uuid::now_v7(),
                url,
                events,
                type_regex,
                tenant_id: optional_id(input.tenant_id, "tenantId")?,
                project_id: optional_id(input.project_id, "projectId")?,
                description: description(input.description)?,
                secret: secret.clone(),
            })
            .await?;
        self.endpoints_hint.registered();
        tracing::info!(endpoint = %endpoint.id, url = %endpoint.url, "webhook endpoint registered");
        Ok(WithSecret {
            endpoint,
            secret: Some(secret),
        })
    }

    pub(crate) async fn list(&self, tenant_id: Option<&str>) -> Result<Vec<Endpoint>> {
        self.store().endpoints(tenant_id).await
    }

    pub(crate) async fn get(&self, id: Uuid) -> Result<Endpoint> {
        self.store()
            .endpoint(id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    pub(crate) async fn update(&self, id: Uuid, input: UpdateInput) -> Result<WithSecret> {
        let url = match input.url {
            Some(u) => Some(check_url(&u, &self.config).await?),
            None => None,
        };
        let events = input.events.as_deref().map(patterns).transpose()?;
        let new_secret = match input.rotate_secret {
            Some(true) => Some(signing::generate_secret()?),
            _ => None,
        };
        let patch = EndpointPatch {
            url,
            events,
            enabled: input.enabled,
            description: input.description.map(description).transpose()?,
            rotate: new_secret
                .clone()
                .map(|s| (s, Utc::now() + ROTATION_OVERLAP)),
        };
        let endpoint = self
            .store()
            .update_endpoint(id, &patch)
            .await?
            .ok_or_else(|| not_found(id))?;
        Ok(WithSecret {
            endpoint,
            secret: new_secret,
        })
    }

    pub(crate) async fn remove(&self, id: Uuid) -> Result<()> {
        if self.store().remove_endpoint(id).await? {
            Ok(())
        } else {
            Err(not_found(id))
        }
    }

    pub(crate) async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>> {
        self.store()
            .deliveries(&DeliveryQuery {
                endpoint_id: filter.endpoint_id,
                status: filter.status,
                event_id: filter.event_id,
                limit: filter.limit.unwrap_or(100).clamp(1, 1000),
            })
            .await
    }

    pub(crate) async fn replay(&self, delivery_id: u64) -> Result<()> {
        if self.store().replay(delivery_id).await? {
            Ok(())
        } else {
            Err(EventBusError::NotFound(format!(
                "webhook delivery {delivery_id} does not exist"
            )))
        }
    }

    pub(crate) async fn replay_failed(
        &self,
        endpoint_id: Uuid,
        since: Option<DateTime<Utc>>,
    ) -> Result<u64> {
        self.get(endpoint_id).await?;
        self.store().replay_failed(endpoint_id, since).await
    }
}

/// An endpoint id as callers pass it.
pub(crate) fn parse_endpoint_id(id: &str, field: &str) -> Result<Uuid> {
    Uuid::try_parse(id)
        .map_err(|_| invalid(format!("{field} must be a webhook endpoint id (a UUID)")))
}

/// A delivery id as callers pass it (a JS number).
pub(crate) fn parse_delivery_id(id: f64) -> Result<u64> {
    crate::json_input::whole_number_id(id)
        .ok_or_else(|| invalid("deliveryId must be a delivery id (a positive whole number)".into()))
}

fn not_found(id: Uuid) -> EventBusError {
    EventBusError::NotFound(format!("webhook endpoint {id} does not exist"))
}

/// `{ id, url, events, tenantId, projectId, description, enabled, disabledReason,
/// consecutiveFailures, createdAt, updatedAt }`, plus `secret` when given.
pub(crate) fn endpoint_json(endpoint: &Endpoint, secret: Option<&str>) -> String {
    let mut value = serde_json::json!({
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events,
        "tenantId": endpoint.tenant_id,
        "projectId": endpoint.project_id,
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "disabledReason": endpoint.disabled_reason,
        "consecutiveFailures": endpoint.consecutive_failures,
        "createdAt": crate::event::format_timestamp(&endpoint.created_at),
        "updatedAt": crate::event::format_timestamp(&endpoint.updated_at),
    });
    if let Some(secret) = secret {
        value["secret"] = serde_json::Value::String(secret.to_string());
    }
    value.to_string()
}

/// A delivery with its attempts, as JSON; `webhookId` is the `webhook-id` header it is sent with.
pub fn delivery_json(d: &Delivery) -> String {
    let time = |t: &DateTime<Utc>| crate::event::format_timestamp(t);
    serde_json::json!({
        "id": d.id,
        "endpointId": d.endpoint_id,
        "position": d.position,
        "eventId": d.event_id,
        "eventType": d.event_type,
        "webhookId": d.event_id.map(|event| signing::message_id(event, d.id)),
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "nextAttemptAt": d.next_attempt_at.as_ref().map(time),
        "lastStatus": d.last_status,
        "lastError": d.last_error,
        "createdAt": time(&d.created_at),
        "updatedAt": time(&d.updated_at),
        "attemptLog": d.attempt_log.iter().map(|a| serde_json::json!({
            "attempt": a.attempt,
            "at": time(&a.at),
            "statusCode": a.status_code,
            "error": a.error,
            "latencyMs": a.latency_ms,
            "responseBody": a.response_body,
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(allow_http: bool, allow_private: bool) -> WebhookConfig {
        WebhookConfig {
            allow_http,
            allow_private_networks: allow_private,
            ..crate::config::Config::default().webhook
        }
    }

    #[tokio::test]
    async fn urls_are_checked() {
        let strict = config(false, false);
        for (url, message) in [
            ("ftp://example.com/x", "must be http or https"),
            ("http://example.com/x", "must use https"),
            ("not a url", "not a valid URL"),
            ("https://user:pw@example.com/", "credentials"),
            ("https://10.0.0.1/hook", "private"),
            ("https://169.254.169.254/latest", "link-local"),
            ("https://[::1]/", "loopback"),
            ("https://[::ffff:127.0.0.1]/", "loopback"),
            ("https://localhost/", "resolves to"),
        ] {
            let err = check_url(url, &strict).await.unwrap_err();
            assert_eq!(err.code(), "INVALID_EVENT");
            assert!(err.to_string().contains(message), "{url}: {err}");
        }
        let open = config(true, true);
        assert_eq!(
            check_url("http://127.0.0.1:9/x", &open).await.unwrap(),
            "http://127.0.0.1:9/x"
        );
    }

    #[test]
    fn patterns_become_one_regex() {
        let (_, re) = patterns(&["order.*".into(), "user.**".into()]).unwrap();
        let re = regex::Regex::new(&re).unwrap();
        assert!(re.is_match("order.placed"));
        assert!(re.is_match("user.a.b"));
        assert!(!re.is_match("order.placed.late"));
        assert!(patterns(&[]).is_err());
        assert!(patterns(&["a.**.b".into()]).is_err());
    }
}
