//! The webhook workers: claim due deliveries from the store's outbox under a lease, POST them
//! signed (a global limit and one per endpoint, so a slow endpoint cannot take every worker), and
//! record each attempt with what follows it (delivered, retry at, dead) in batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, warn, Instrument};
use uuid::Uuid;

use super::signing::{message_id, signature_header};
use super::ssrf;
use super::EndpointsHint;
use crate::backoff::Backoff;
use crate::config::WebhookConfig;
use crate::error::{EventBusError, Result};
use crate::event::format_timestamp;
use crate::metrics::{AttemptOutcome, Metrics};
use crate::store::webhooks::{Attempt, Disabled, DueDelivery, Next, Outcome};
use crate::store::Store;
use crate::trace_context::TraceContext;

/// Deliveries claimed per request slot: claiming ahead keeps the workers busy with few claims
/// (each claim scans the outbox's due index, which churns under load).
const CLAIM_AHEAD: usize = 16;

/// Response bytes kept with an attempt.
const KEEP_BODY: usize = 1024;

const USER_AGENT: &str = concat!("situs-event-bus/", env!("CARGO_PKG_VERSION"));

/// Called for each endpoint the workers disabled (the bus publishes `webhook.endpoint_disabled`).
pub type OnDisabled = Arc<dyn Fn(Disabled) + Send + Sync>;

pub struct Workers {
    stopped: Arc<AtomicBool>,
    wake: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Workers {
    /// Rings when events commit: deliveries may be due.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Stops claiming, lets requests in flight finish and records them.
    pub async fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The HTTP client every worker shares: no redirects, the configured timeout and, unless private
/// networks are allowed, a resolver that refuses private addresses.
fn client(config: &WebhookConfig) -> Result<reqwest::Client> {
    // reqwest is built without a default rustls provider; ring is ours (installing twice is fine).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_millis(config.timeout_ms))
        .user_agent(USER_AGENT)
        .pool_max_idle_per_host(config.per_endpoint_concurrency);
    if !config.allow_private_networks {
        builder = builder.dns_resolver(Arc::new(ssrf::GuardedResolver));
    }
    builder
        .build()
        .map_err(|e| EventBusError::InvalidConfig(format!("cannot build the webhook client: {e}")))
}

pub fn spawn(
    store: Arc<dyn Store>,
    config: WebhookConfig,
    metrics: Arc<Metrics>,
    endpoints: Arc<EndpointsHint>,
    on_disabled: OnDisabled,
    span: tracing::Span,
) -> Result<Workers> {
    let client = client(&config)?;
    let stopped = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    let pool = Pool {
        store,
        client,
        backoff: Backoff {
            initial: config.backoff_initial,
            max: config.backoff_max,
            factor: f64::from(config.backoff_factor),
        },
        config,
        metrics,
        stopped: stopped.clone(),
        wake: wake.clone(),
        endpoints,
    };
    let task = tokio::spawn(pool.run(on_disabled).instrument(span));
    Ok(Workers {
        stopped,
        wake,
        task: Mutex::new(Some(task)),
    })
}

struct Pool {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    config: WebhookConfig,
    backoff: Backoff,
    metrics: Arc<Metrics>,
    stopped: Arc<AtomicBool>,
    wake: Arc<Notify>,
    /// Whether endpoints exist, as of the last poll (or registered here since).
    endpoints: Arc<EndpointsHint>,
}

/// Deliveries claimed and not yet recorded, per endpoint (bounded so one endpoint's backlog
/// cannot fill every slot).
type Claimed = Arc<Mutex<HashMap<Uuid, usize>>>;

impl Pool {
    /// Waits for the poll timer or a commit. Commits count only while endpoints exist: without
    /// any, a claim per commit would cost every publish a query that finds nothing.
    async fn idle(&self) {
        let timer = tokio::time::sleep(self.config.poll_interval);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                _ = &mut timer => break,
                _ = self.wake.notified() => {
                    if self.endpoints.get().1 || self.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                }
            }
        }
        let (seen, _) = self.endpoints.get();
        // An error leaves the hint on: the claim that follows reports the failure.
        let any = self.store.webhooks().has_endpoints().await.unwrap_or(true);
        self.endpoints.polled(seen, any);
    }

    async fn run(self, on_disabled: OnDisabled) {
        let pool = Arc::new(self);
        let (outcomes, recorded) = mpsc::unbounded_channel::<Outcome>();
        let recorder = tokio::spawn(
            record_loop(
                pool.store.clone(),
                recorded,
                pool.config.disable_after_failures,
                on_disabled,
            )
            .in_current_span(),
        );
        // Slots: claimed deliveries alive at once; sending: requests in flight.
        let slots = Arc::new(Semaphore::new(CLAIM_AHEAD * pool.config.concurrency));
        let sending = Arc::new(Semaphore::new(pool.config.concurrency));
        let per_endpoint: Arc<Mutex<HashMap<Uuid, Arc<Semaphore>>>> = Arc::default();
        let claimed: Claimed = Arc::default();
        // Long enough for a claimed delivery to wait its turn (at most CLAIM_AHEAD rounds of its
        // endpoint's requests) and be sent; a crashed worker's claims come due after it.
        let lease = Duration::from_millis(pool.config.timeout_ms) * (CLAIM_AHEAD as u32 + 1)
            + Duration::from_secs(10);
        let mut failures = 0u32;
        while !pool.stopped.load(Ordering::SeqCst) {
            let free = slots.available_permits();
            if free == 0 {
                // Wait for a slot (or a stop).
                tokio::select! {
                    permit = slots.clone().acquire_owned() => drop(permit),
                    _ = pool.wake.notified() => {}
                }
                continue;
            }
            let busy: Vec<Uuid> = claimed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(_, &n)| n >= pool.config.per_endpoint_concurrency * CLAIM_AHEAD)
                .map(|(&id, _)| id)
                .collect();
            let due = match pool.store.webhooks().claim_due(free, lease, &busy).await {
                Ok(due) => {
                    failures = 0;
                    due
                }
                Err(e) => {
                    failures += 1;
                    warn!(error = %e, "claiming webhook deliveries failed; retrying");
                    let wait = Duration::from_millis(200 * u64::from(failures.min(25)));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = pool.wake.notified() => {}
                    }
                    continue;
                }
            };
            if due.is_empty() {
                pool.idle().await;
                continue;
            }
            for delivery in due {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    break;
                };
                let endpoint = per_endpoint
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(delivery.endpoint_id)
                    .or_insert_with(|| {
                        Arc::new(Semaphore::new(pool.config.per_endpoint_concurrency))
                    })
                    .clone();
                *claimed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(delivery.endpoint_id)
                    .or_default() += 1;
                let (pool, sending, claimed, outcomes) = (
                    pool.clone(),
                    sending.clone(),
                    claimed.clone(),
                    outcomes.clone(),
                );
                tokio::spawn(
                    async move {
                        let endpoint_id = delivery.endpoint_id;
                        if let (Ok(_e), Ok(_s)) =
                            (endpoint.acquire().await, sending.acquire().await)
                        {
                            // Once stopping, what has not started stays claimed until its lease
                            // ends, then another worker (or the next start) sends it.
                            if !pool.stopped.load(Ordering::SeqCst) {
                                let outcome = pool.send(delivery).await;
                                let _ = outcomes.send(outcome);
                            }
                        }
                        let mut claimed = claimed.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(n) = claimed.get_mut(&endpoint_id) {
                            *n -= 1;
                            if *n == 0 {
                                claimed.remove(&endpoint_id);
                            }
                        }
                        drop(slot);
                    }
                    .in_current_span(),
                );
            }
        }
        // Let requests in flight finish, then the recorder drains the channel and ends.
        let _ = slots
            .acquire_many((CLAIM_AHEAD * pool.config.concurrency) as u32)
            .await;
        drop(outcomes);
        let _ = recorder.await;
    }

    /// One signed POST; what follows it.
    async fn send(&self, d: DueDelivery) -> Outcome {
        let attempt = d.attempts + 1;
        let body = d.event.json();
        let id = message_id(d.event.event.id, d.id);
        let timestamp = Utc::now().timestamp();
        let at = Utc::now();
        let started = Instant::now();
        let refused = literal_refusal(&d.url, &self.config);
        let result = match refused.clone() {
            Some(message) => Err(message),
            None => {
                let mut request = self
                    .client
                    .post(&d.url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header(
                        "webhook-signature",
                        signature_header(&d.secrets, &id, timestamp, body),
                    );
                // The event's trace continues at the receiver.
                if let Some(trace) = TraceContext::of(&d.event.event) {
                    request = request.header("traceparent", trace.traceparent);
                    if let Some(state) = trace.tracestate {
                        request = request.header("tracestate", state);
                    }
                }
                let span = tracing::debug_span!(
                    "send webhook",
                    messaging.system = crate::trace_context::MESSAGING_SYSTEM,
                    messaging.operation.type = "send",
                    messaging.destination.name = d.event.event.event_type.as_str(),
                    messaging.message.id = id.as_str(),
                    endpoint = %d.endpoint_id,
                    attempt,
                    otel.name = tracing::field::Empty,
                    otel.kind = "producer",
                );
                crate::trace_context::export_as(
                    &span,
                    "send",
                    d.event.event.event_type.as_str(),
                    Some(&d.event.event),
                );
                request
                    .body(body.to_string())
                    .send()
                    .instrument(span)
                    .await
                    .map_err(|e| describe(&e, self.config.timeout_ms))
            }
        };
        let (status, retry_after, response_body, error) = match result {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let retry_after = retry_after(response.headers());
                let mut kept = Vec::new();
                while kept.len() < KEEP_BODY {
                    match response.chunk().await {
                        Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                        _ => break,
                    }
                }
                kept.truncate(KEEP_BODY);
                let text = String::from_utf8_lossy(&kept).into_owned();
                (Some(status), retry_after, Some(text), None)
            }
            Err(message) => (None, None, None, Some(message)),
        };
        let took = started.elapsed();
        let latency_ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
        let next = match status {
            Some(s) if (200..300).contains(&s) => Next::Delivered,
            Some(410) => Next::Gone,
            // A refused address will not become public by waiting.
            _ if refused.is_some() => Next::Dead,
            _ if attempt > self.config.retry_attempts => Next::Dead,
            _ => {
                let delay = retry_after
                    .map(|d| d.min(self.backoff.max))
                    .unwrap_or_else(|| self.backoff.delay(attempt));
                Next::RetryAt(
                    Utc::now()
                        + chrono::Duration::from_std(delay)
                            .unwrap_or_else(|_| chrono::Duration::seconds(60)),
                )
            }
        };
        // Absent fields (`status` without a response) are left out of the record.
        let event = d.event.event.id;
        let cause = failure_cause(status, error.as_deref());
        let outcome = match next {
            Next::Delivered => AttemptOutcome::Success,
            Next::Dead | Next::Gone => AttemptOutcome::Dead,
            Next::RetryAt(_) => AttemptOutcome::Retry,
        };
        self.metrics
            .webhook_attempt(&d.endpoint_id.to_string(), outcome, took);
        match next {
            Next::Delivered => {}
            Next::Dead | Next::Gone => {
                warn!(delivery = d.id, endpoint = %d.endpoint_id, %event, webhook_id = %id, status, error = cause.as_deref(), "webhook delivery is dead");
            }
            Next::RetryAt(at) => {
                debug!(delivery = d.id, endpoint = %d.endpoint_id, %event, webhook_id = %id, status, error = cause.as_deref(), retry_at = %format_timestamp(&at), "webhook attempt failed; will retry");
            }
        }
        Outcome {
            delivery_id: d.id,
            endpoint_id: d.endpoint_id,
            attempt: Attempt {
                attempt,
                at,
                status_code: status,
                error,
                latency_ms,
                response_body,
            },
            next,
        }
    }
}

/// Why an attempt failed, in words: the transport's error, else the status that was not 2xx.
fn failure_cause(status: Option<u16>, error: Option<&str>) -> Option<String> {
    match (error, status) {
        (Some(error), _) => Some(error.to_string()),
        (None, Some(s)) if !(200..300).contains(&s) => {
            Some(format!("the endpoint answered HTTP {s}"))
        }
        (None, _) => None,
    }
}

/// For URLs whose host is an IP address (the resolver is not asked): the refusal, if any.
fn literal_refusal(url: &str, config: &WebhookConfig) -> Option<String> {
    if config.allow_private_networks {
        return None;
    }
    let host = reqwest::Url::parse(url).ok()?.host()?.to_owned();
    let ip: std::net::IpAddr = match host {
        url::Host::Ipv4(ip) => ip.into(),
        url::Host::Ipv6(ip) => ip.into(),
        url::Host::Domain(_) => return None,
    };
    ssrf::refusal(ip).map(|why| ssrf::refused(ip, why))
}

/// `Retry-After` as seconds (HTTP dates are rare from webhook receivers and are ignored).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn describe(e: &reqwest::Error, timeout_ms: u64) -> String {
    if e.is_timeout() {
        return format!("timed out after {timeout_ms} ms");
    }
    // The chain carries the useful part (connection refused, resolver refusal, …).
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Writes outcomes in batches; a failed write is retried (attempts are not lost, and their
/// deliveries stay leased meanwhile).
async fn record_loop(
    store: Arc<dyn Store>,
    mut outcomes: mpsc::UnboundedReceiver<Outcome>,
    disable_after: u32,
    on_disabled: OnDisabled,
) {
    let mut batch = Vec::with_capacity(256);
    while outcomes.recv_many(&mut batch, 1000).await > 0 {
        let mut failures = 0u32;
        loop {
            match store.webhooks().record(&batch, disable_after).await {
                Ok(disabled) => {
                    for d in disabled {
                        warn!(endpoint = %d.endpoint_id, reason = %d.reason, "webhook endpoint disabled");
                        on_disabled(d);
                    }
                    break;
                }
                Err(e) => {
                    failures += 1;
                    warn!(error = %e, "recording webhook attempts failed; retrying");
                    if failures > 50 {
                        // Give up on this batch: its deliveries come due again when their
                        // leases expire, and are sent again (at least once).
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(25))))
                        .await;
                }
            }
        }
        batch.clear();
    }
}
