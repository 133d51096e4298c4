//! `/metrics` over HTTP from the bus's own runtime (`metrics: { listen }`), for processes that
//! have no HTTP server of their own: a Prometheus scrape target.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::MetricsListen;
use crate::error::{EventBusError, Result};

/// Renders the metrics text when scraped.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// A running metrics server; dropping it does not stop it (see [`MetricsServer::stop`]).
pub struct MetricsServer {
    /// `http://host:port/path`
    pub url: String,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Stops serving (a scrape in progress is cut off; it only reads).
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Binds `listen` and serves `render()` at its path; 404 elsewhere.
pub async fn serve(listen: &MetricsListen, render: Render) -> Result<MetricsServer> {
    let listener = tokio::net::TcpListener::bind((listen.host.as_str(), listen.port))
        .await
        .map_err(|e| {
            EventBusError::InvalidConfig(format!(
                "metrics.listen: cannot listen on {}:{}: {e}",
                listen.host, listen.port
            ))
        })?;
    let addr = listener.local_addr().map_err(|e| {
        EventBusError::InvalidConfig(format!(
            "metrics.listen: cannot read the bound address: {e}"
        ))
    })?;
    let path = listen.path.clone();
    let app = axum::Router::new().route(
        &path,
        axum::routing::get(move || {
            let render = render.clone();
            async move { scrape(&*render) }
        }),
    );
    let shown = match addr {
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        SocketAddr::V4(a) => a.to_string(),
    };
    let url = format!("http://{shown}{path}");
    let span = tracing::info_span!("metrics_server", %addr);
    let task = tokio::spawn(
        async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "metrics server stopped");
            }
        }
        .instrument(span),
    );
    tracing::info!(url = %url, "metrics server listening");
    Ok(MetricsServer { url, task })
}

fn scrape(render: &(dyn Fn() -> String + Send + Sync)) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        render(),
    )
        .into_response()
}
