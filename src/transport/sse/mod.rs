//! Server-Sent Events: a Rust HTTP server (axum) holds the browser connections, fed by one router
//! subscription through a ring of recent events; `Last-Event-ID` replays from the ring or the
//! store. `stream()` gives the same messages to NestJS `@Sse()` controllers.

pub mod hub;
mod killable;
pub mod server;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use crate::config::SseConfig;
use crate::error::{EventBusError, Result};
use crate::event::SharedEvent;
use crate::metrics::Metrics;
use crate::pattern::{any_matches, Pattern};
use crate::router::{Router, SubscriberFilter, Subscription};
use crate::store::Store;
use hub::{Connection, Hub, HubSink, Outbound};

/// What an `authorize` hook allows a connection to see.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Grant {
    /// Only this tenant's events (None: every tenant).
    pub tenant_id: Option<String>,
    /// Only these projects' events.
    pub project_ids: Option<Vec<String>>,
    /// Only events matching these patterns.
    pub types: Option<Vec<String>>,
}

/// The request an `authorize` hook decides on.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthRequest {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub remote_address: String,
}

/// Decides who may open a stream (the JS `authorize` hook, through the napi layer).
#[async_trait]
pub trait Authorizer: Send + Sync {
    /// The grant, or None to refuse (401).
    async fn authorize(&self, request: AuthRequest) -> Result<Option<Grant>>;
}

/// Which events one stream carries: what the client selected, within what it was granted.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub types: Option<Vec<Pattern>>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub grant_types: Option<Vec<Pattern>>,
    pub grant_projects: Option<Vec<String>>,
    pub grant_tenant: Option<String>,
}

impl Filter {
    pub fn new(selection: Selection, grant: Grant) -> Result<Filter> {
        let types = selection
            .types
            .map(|t| Pattern::parse_all(&t))
            .transpose()?;
        let grant_types = grant
            .types
            .map(|t| Pattern::parse_all(&t))
            .transpose()
            .map_err(|e| EventBusError::InvalidEvent(format!("grant types: {e}")))?;
        Ok(Filter {
            types,
            project_id: selection.project_id,
            tenant_id: selection.tenant_id,
            grant_types,
            grant_projects: grant.project_ids,
            grant_tenant: grant.tenant_id,
        })
    }

    /// Both the selection and the grant allow the event (tenant, projects, types).
    pub fn accepts(&self, event: &SharedEvent) -> bool {
        let e = &event.event;
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        same(&self.tenant_id, &e.tenant_id)
            && same(&self.grant_tenant, &e.tenant_id)
            && same(&self.project_id, &e.project_id)
            && self
                .grant_projects
                .as_ref()
                .is_none_or(|ps| e.project_id.as_ref().is_some_and(|p| ps.contains(p)))
            && self
                .types
                .as_ref()
                .is_none_or(|t| any_matches(t, &e.event_type))
            && self
                .grant_types
                .as_ref()
                .is_none_or(|t| any_matches(t, &e.event_type))
    }

    /// The narrowest store query the filter allows (the rest is checked by `accepts`).
    fn query_types(&self) -> Vec<Pattern> {
        self.types
            .clone()
            .or_else(|| self.grant_types.clone())
            .unwrap_or_default()
    }

    fn query_project(&self) -> Option<String> {
        self.project_id
            .clone()
            .or_else(|| match &self.grant_projects {
                Some(ps) if ps.len() == 1 => ps.first().cloned(),
                _ => None,
            })
    }

    fn query_tenant(&self) -> Option<String> {
        self.grant_tenant.clone().or_else(|| self.tenant_id.clone())
    }
}

/// What a client asked for (query string, or `stream()` options).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selection {
    pub types: Option<Vec<String>>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
}

/// `stream({ types, projectId, tenantId, lastEventId })`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StreamOptions {
    pub types: Option<Vec<String>>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub last_event_id: Option<LastEventId>,
}

/// A last event id as a number or a numeric string (EventSource sends strings).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum LastEventId {
    Number(u64),
    Text(String),
}

impl LastEventId {
    pub fn position(&self) -> Result<u64> {
        match self {
            LastEventId::Number(n) => Ok(*n),
            LastEventId::Text(t) => parse_last_event_id(t),
        }
    }
}

pub fn parse_last_event_id(text: &str) -> Result<u64> {
    text.trim().parse::<u64>().map_err(|_| {
        EventBusError::InvalidEvent(format!(
            "lastEventId must be an event position (a whole number), got {text:?}"
        ))
    })
}

impl StreamOptions {
    pub fn from_json(text: &str) -> Result<StreamOptions> {
        crate::json_input::parse_object(text, "stream options", "")
            .map_err(EventBusError::InvalidEvent)
    }
}

/// One SSE message as sent: `id:`/`event:`/`data:` lines (`event:` left out when the client
/// asked for plain messages, so `EventSource.onmessage` sees everything).
pub fn render(message: &Outbound, named: bool) -> axum::body::Bytes {
    match message {
        Outbound::Event(frame) => frame.bytes(named),
        Outbound::Reset => axum::body::Bytes::from_static(b"event: reset\ndata: {}\n\n"),
    }
}

fn render_event(e: &SharedEvent, named: bool) -> String {
    let mut out = String::with_capacity(e.json().len() + e.event.event_type.len() + 32);
    out.push_str("id: ");
    out.push_str(&e.position.to_string());
    out.push('\n');
    if named {
        out.push_str("event: ");
        out.push_str(&e.event.event_type);
        out.push('\n');
    }
    // JSON text has no raw newlines unless a caller sent some; each line gets `data:`.
    for line in e.json().split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// Messages as a JSON array of `{ id, type, data }` for `stream()` (a reset is `{ type: "reset" }`).
pub fn messages_json(batch: &[Outbound]) -> String {
    let parts: Vec<String> = batch
        .iter()
        .map(|m| match m {
            Outbound::Event(frame) => format!(
                r#"{{"id":"{}","type":{},"data":{}}}"#,
                frame.event.position,
                serde_json::Value::String(frame.event.event.event_type.clone()),
                frame.event.json()
            ),
            Outbound::Reset => r#"{"type":"reset"}"#.to_string(),
        })
        .collect();
    crate::event::json_array(parts.iter().map(String::as_str))
}

/// The bus's SSE side: the hub (created on first use) and its servers.
pub struct Sse {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    metrics: Arc<Metrics>,
    config: SseConfig,
    hub: OnceCell<(Arc<Hub>, Subscription)>,
    span: tracing::Span,
}

impl Sse {
    pub fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        metrics: Arc<Metrics>,
        config: SseConfig,
        span: tracing::Span,
    ) -> Sse {
        Sse {
            store,
            router,
            metrics,
            config,
            hub: OnceCell::new(),
            span,
        }
    }

    pub fn config(&self) -> &SseConfig {
        &self.config
    }

    /// The hub, subscribed to every event committed after the log's head at creation (replayed
    /// from the store by the router first, so nothing falls between).
    pub async fn hub(&self) -> Result<Arc<Hub>> {
        let (hub, _) = self
            .hub
            .get_or_try_init(|| async {
                let head = self.store.head_position().await?;
                let hub = Hub::new(
                    self.store.clone(),
                    self.metrics.clone(),
                    head,
                    self.config.replay_buffer,
                    self.config.client_buffer,
                );
                let subscription = self.router.subscribe(
                    Pattern::parse_all(&["**".to_string()])?,
                    SubscriberFilter::default(),
                    Arc::new(HubSink(hub.clone())),
                    crate::router::Consumer::Sse,
                    Some(crate::router::Replay {
                        store: self.store.clone(),
                        after: head,
                    }),
                    self.span.clone(),
                );
                Ok::<_, EventBusError>((hub, subscription))
            })
            .await?;
        Ok(hub.clone())
    }

    /// Opens a stream: replay after `last_event_id` (a reset when it is older than the log),
    /// then live events, all within `filter`.
    pub async fn open(
        &self,
        filter: Filter,
        last_event_id: Option<u64>,
        on_drop: Option<hub::OnDrop>,
    ) -> Result<Stream> {
        let hub = self.hub().await?;
        let reset = match last_event_id {
            Some(last) => hub.is_before_history(last).await?,
            None => false,
        };
        // After a reset the client refetches: it gets live events only.
        let last = if reset { None } else { last_event_id };
        let connection = hub.connect(filter, last, on_drop);
        if reset {
            Metrics::add(&self.metrics.sse_resets, 1);
        } else if last.is_some() {
            // A reconnect: what it missed comes from the store when the ring no longer has it.
            self.metrics.sse_replayed(connection.store_replay.is_none());
        }
        Ok(Stream {
            hub,
            replay: connection.store_replay,
            pending_reset: reset,
            reset,
            connection,
        })
    }

    /// Stops feeding the hub and ends every open stream.
    pub fn stop(&self) {
        if let Some((hub, subscription)) = self.hub.get() {
            subscription.unsubscribe();
            hub.close_all();
        }
    }
}

/// An open stream's messages in order: a reset if any, the store replay, then the queue.
pub struct Stream {
    hub: Arc<Hub>,
    replay: Option<(u64, u64)>,
    pending_reset: bool,
    reset: bool,
    connection: Connection,
}

impl Stream {
    /// Where a client that starts without a last id stands: resuming after this position
    /// replays exactly what it missed.
    pub fn head(&self) -> u64 {
        self.connection.head
    }

    /// Whether the client's last id was older than the log (it gets `event: reset`).
    pub fn was_reset(&self) -> bool {
        self.reset
    }

    /// The next messages (at least one), or None when the stream ended (dropped as too slow,
    /// or the bus closed). Store replay failures end the stream too (the client reconnects).
    pub async fn next_batch(&mut self, max: usize) -> Option<Vec<Outbound>> {
        if self.pending_reset {
            self.pending_reset = false;
            return Some(vec![Outbound::Reset]);
        }
        while let Some((after, up_to)) = self.replay {
            let filter = self.connection.filter();
            match self.hub.replay_page(filter, after, up_to).await {
                Ok(rows) => {
                    let last = rows.last().map(|e| e.position);
                    self.replay = match last {
                        Some(l) if rows.len() == 500 && l < up_to => Some((l, up_to)),
                        _ => None,
                    };
                    let out: Vec<Outbound> = rows
                        .into_iter()
                        .filter(|e| filter.accepts(e))
                        .map(|e| Outbound::Event(hub::Frame::new(e)))
                        .collect();
                    if !out.is_empty() {
                        return Some(out);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SSE replay from the store failed; closing the stream");
                    return None;
                }
            }
        }
        self.connection.next(max).await
    }
}
