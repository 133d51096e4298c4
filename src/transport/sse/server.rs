//! The SSE HTTP server (axum on the bus's tokio runtime): authorize, then stream a comment at
//! once, the `retry:` hint, the replay and live events, and a heartbeat comment while idle.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn, Instrument};

use super::killable::{KillableListener, Peer};
use super::{
    parse_last_event_id, render, AuthRequest, Authorizer, Filter, Grant, Selection, Sse, Stream,
};
use crate::error::{EventBusError, Result};

/// `sse.listen({ port, host, path, cors })` (the `authorize` hook comes separately).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenOptions {
    pub port: Option<u16>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub cors: Option<Cors>,
}

/// `true` (any origin, echoed, with credentials), one origin, or a list of origins.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum Cors {
    Any(bool),
    Origin(String),
    Origins(Vec<String>),
}

impl ListenOptions {
    pub fn from_json(text: &str) -> Result<ListenOptions> {
        crate::json_input::parse_object(text, "listen options", "")
            .map_err(EventBusError::InvalidEvent)
    }
}

struct App {
    sse: Arc<Sse>,
    path: String,
    cors: Option<Cors>,
    authorizer: Option<Arc<dyn Authorizer>>,
    closing: watch::Receiver<bool>,
}

/// A running server; `close` ends its streams and stops listening.
pub struct SseServer {
    pub url: String,
    stop: Mutex<Option<(watch::Sender<bool>, oneshot::Sender<()>)>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl SseServer {
    pub async fn close(&self) {
        let stop = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((closing, shutdown)) = stop {
            let _ = closing.send(true);
            let _ = shutdown.send(());
        }
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

pub async fn listen(
    sse: Arc<Sse>,
    options: ListenOptions,
    authorizer: Option<Arc<dyn Authorizer>>,
) -> Result<SseServer> {
    let host = options.host.unwrap_or_else(|| "127.0.0.1".into());
    let path = options.path.unwrap_or_else(|| "/events".into());
    if !path.starts_with('/') {
        return Err(EventBusError::InvalidEvent("path must start with /".into()));
    }
    let listener = tokio::net::TcpListener::bind((host.as_str(), options.port.unwrap_or(0)))
        .await
        .map_err(|e| EventBusError::InvalidConfig(format!("cannot listen on {host}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| EventBusError::InvalidConfig(format!("cannot read the bound address: {e}")))?;
    sse.hub().await?;
    let listener = KillableListener(listener);
    let (closing_tx, closing) = watch::channel(false);
    let (shutdown_tx, shutdown) = oneshot::channel::<()>();
    let app = Arc::new(App {
        sse,
        path: path.clone(),
        cors: options.cors,
        authorizer,
        closing,
    });
    let router = axum::Router::new().fallback(handle).with_state(app);
    let span = tracing::info_span!("sse_server", %addr);
    let task = tokio::spawn(
        async move {
            let served = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<Peer>(),
            )
            .with_graceful_shutdown(async {
                let _ = shutdown.await;
            })
            .await;
            if let Err(e) = served {
                warn!(error = %e, "SSE server stopped");
            }
        }
        .instrument(span),
    );
    let shown = match addr {
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        SocketAddr::V4(a) => a.to_string(),
    };
    tracing::info!(url = %format!("http://{shown}{path}"), "SSE server listening");
    Ok(SseServer {
        url: format!("http://{shown}{path}"),
        stop: Mutex::new(Some((closing_tx, shutdown_tx))),
        task: Mutex::new(Some(task)),
    })
}

fn text_response(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

async fn handle(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut response = respond(&app, peer, &method, &uri, &headers).await;
    if let Some(origin) = allowed_origin(app.cors.as_ref(), &headers) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

/// The origin to allow for this request, if CORS is on and the origin is allowed.
fn allowed_origin(cors: Option<&Cors>, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    let allowed = match cors? {
        Cors::Any(on) => *on,
        Cors::Origin(o) => o == text || o == "*",
        Cors::Origins(list) => list.iter().any(|o| o == text),
    };
    allowed.then(|| origin.clone())
}

async fn respond(
    app: &App,
    peer: Peer,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    if uri.path() != app.path {
        return text_response(StatusCode::NOT_FOUND, "not found".into());
    }
    if method == Method::OPTIONS {
        return (
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, OPTIONS"),
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "last-event-id, authorization, cache-control",
                ),
            ],
        )
            .into_response();
    }
    if method != Method::GET {
        return text_response(StatusCode::METHOD_NOT_ALLOWED, "use GET".into());
    }
    let query: BTreeMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let selection = Selection {
        types: query.get("types").map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        }),
        project_id: query.get("projectId").cloned(),
        tenant_id: query.get("tenantId").cloned(),
    };
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query.get("lastEventId").cloned())
        .filter(|v| !v.trim().is_empty());
    let last_event_id = match last_event_id.map(|v| parse_last_event_id(&v)).transpose() {
        Ok(v) => v,
        Err(e) => return text_response(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let named = query.get("format").map(String::as_str) != Some("message");
    let grant = match &app.authorizer {
        None => Grant::default(),
        Some(authorizer) => {
            let request = AuthRequest {
                method: method.to_string(),
                path: uri.path().to_string(),
                query: query.clone(),
                headers: headers
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((k.as_str().to_string(), v.to_str().ok()?.to_string()))
                    })
                    .collect(),
                remote_address: peer.addr.ip().to_string(),
            };
            match authorizer.authorize(request).await {
                Ok(Some(grant)) => grant,
                Ok(None) => return text_response(StatusCode::UNAUTHORIZED, "unauthorized".into()),
                Err(e) => {
                    warn!(error = %e, "SSE authorize hook failed");
                    return text_response(StatusCode::UNAUTHORIZED, "unauthorized".into());
                }
            }
        }
    };
    let filter = match Filter::new(selection, grant) {
        Ok(f) => f,
        Err(e) => return text_response(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // Dropped as too slow: close the socket, which hyper (waiting to write) would keep open.
    let switch = peer.switch.clone();
    let on_drop: super::hub::OnDrop = Arc::new(move || switch.kill());
    let stream = match app.sse.open(filter, last_event_id, Some(on_drop)).await {
        Ok(s) => s,
        Err(e) => return text_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    debug!(remote = %peer.addr, "SSE stream opened");
    let config = app.sse.config();
    // A client that came without a last id (or was reset) is told where it stands, so even a
    // reconnect before its first event resumes without a gap (`id:` without data dispatches
    // nothing; it sets the EventSource's Last-Event-ID).
    let start_id = match last_event_id {
        Some(_) if !stream.was_reset() => None,
        _ => Some(stream.head()),
    };
    let body = body(
        stream,
        start_id,
        named,
        Duration::from_millis(config.heartbeat_interval_ms),
        config.retry_ms,
        app.closing.clone(),
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// The response body: a comment and the retry hint at once, then messages, heartbeats while
/// idle, and the end when the stream ends or the server closes.
fn body(
    stream: Stream,
    start_id: Option<u64>,
    named: bool,
    heartbeat: Duration,
    retry_ms: u64,
    closing: watch::Receiver<bool>,
) -> impl futures_util::Stream<Item = std::result::Result<Bytes, Infallible>> + Send {
    let mut preamble = format!(": connected\n\nretry: {retry_ms}\n\n");
    if let Some(id) = start_id {
        preamble.push_str(&format!("id: {id}\n\n"));
    }
    let idle = Idle::new(heartbeat);
    let state = (Some(preamble), stream, idle, closing);
    futures_util::stream::unfold(
        state,
        move |(preamble, mut stream, mut idle, mut closing)| async move {
            if let Some(first) = preamble {
                idle.wrote();
                return Some((Ok(Bytes::from(first)), (None, stream, idle, closing)));
            }
            if *closing.borrow() {
                return None;
            }
            let chunk = tokio::select! {
                batch = stream.next_batch(256) => {
                    let batch = batch?;
                    idle.wrote();
                    // One message goes out as its shared bytes; several are joined into one write.
                    if let [one] = batch.as_slice() {
                        render(one, named)
                    } else {
                        let parts: Vec<Bytes> = batch.iter().map(|m| render(m, named)).collect();
                        Bytes::from(parts.concat())
                    }
                }
                _ = idle.due() => {
                    idle.wrote();
                    Bytes::from_static(b": heartbeat\n\n")
                }
                _ = closing.changed() => return None,
            };
            Some((Ok(chunk), (None, stream, idle, closing)))
        },
    )
}

/// When an idle stream must write next: one heartbeat interval after its last write. A write
/// only notes the time; the timer moves when it fires (to the last write plus the interval), so
/// sends stay cheap and no gap between writes exceeds the interval.
struct Idle {
    timer: Pin<Box<tokio::time::Sleep>>,
    last_write: Instant,
    every: Duration,
}

impl Idle {
    fn new(every: Duration) -> Idle {
        let now = Instant::now();
        Idle {
            timer: Box::pin(tokio::time::sleep_until(now + every)),
            last_write: now,
            every,
        }
    }

    fn wrote(&mut self) {
        self.last_write = Instant::now();
    }

    /// Resolves when the stream has written nothing for a whole interval. Cancel-safe: the
    /// deadline lives in `timer`.
    async fn due(&mut self) {
        loop {
            self.timer.as_mut().await;
            let due = self.last_write + self.every;
            let now = Instant::now();
            if now >= due {
                self.timer.as_mut().reset(now + self.every);
                return;
            }
            self.timer.as_mut().reset(due);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::metrics::Metrics;
    use crate::router::Sink;
    use crate::store::memory::MemoryStore;
    use crate::transport::sse::hub::{self, Hub, HubSink};

    /// A stream on a fresh hub, and the sink that feeds the hub.
    fn stream() -> (Stream, HubSink) {
        let store: Arc<dyn crate::store::Store> = Arc::new(MemoryStore::default());
        let hub = Hub::new(store, Arc::new(Metrics::default()), 0, 16, 16);
        let connection = hub.connect(Filter::default(), None, None);
        let stream = Stream {
            hub: hub.clone(),
            replay: None,
            pending_reset: false,
            reset: false,
            connection,
        };
        (stream, HubSink(hub))
    }

    #[tokio::test(start_paused = true)]
    async fn no_gap_between_writes_exceeds_the_heartbeat_interval() {
        let every = Duration::from_millis(300);
        let (stream, sink) = stream();
        let (_closing, closing) = watch::channel(false);
        let body = body(stream, Some(0), true, every, 1000, closing);
        tokio::pin!(body);
        let start = Instant::now();
        // An event between two heartbeats: the next heartbeat is due one interval after it.
        let publisher = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(450)).await;
            sink.deliver(&[hub::tests::event(1, "a.b", "t1")]).await;
        });
        let mut writes = Vec::new();
        while start.elapsed() < Duration::from_secs(2) {
            let chunk = body.next().await.expect("stream open").expect("bytes");
            writes.push((start.elapsed(), chunk));
        }
        publisher.await.expect("publisher");
        assert!(writes.iter().any(|(_, c)| c.starts_with(b"id: 1\n")));
        let times: Vec<Duration> = writes.iter().map(|(t, _)| *t).collect();
        // Timers fire on whole milliseconds.
        let slack = Duration::from_millis(1);
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] <= every + slack, "writes at {times:?}");
        }
        // One heartbeat per idle interval, not more: after the preamble, 300 ms, the event at
        // 450 ms, then every 300 ms.
        let heartbeats = writes
            .iter()
            .filter(|(_, c)| c.as_ref() == b": heartbeat\n\n")
            .count();
        assert_eq!(heartbeats, 7, "writes at {times:?}");
    }
}
