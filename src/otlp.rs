//! OTLP/HTTP export of the bus's messaging spans (the `otlp` cargo feature). The global
//! subscriber (see [`crate::log_forward`]) holds a slot that an OpenTelemetry layer is put in when
//! the first bus with `tracing.otlp` opens: the subscriber can be installed only once, and a bus
//! with a logger may have installed it before. The layer has its own filter (the messaging spans,
//! whatever the logger's level) and one exporter serves the process.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use opentelemetry_sdk::Resource;
use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Span};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::Registry;

use crate::config::OtlpConfig;
use crate::error::{EventBusError, Result};
use crate::event::Event;
use crate::trace_context::TraceContext;

/// The field every exported span has; spans without it (the bus's long-lived task spans, whose
/// children would all land in one endless trace) are not exported.
const EXPORTED_FIELD: &str = "messaging.system";

/// How long closing a bus waits for its spans to be sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

struct Exporter {
    config: OtlpConfig,
    provider: SdkTracerProvider,
    layer: OpenTelemetryLayer<Registry, Tracer>,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// The layer of the global subscriber that exports once [`install`] has filled it.
pub(crate) struct Slot;

/// [`Slot`] behind its own filter.
pub(crate) fn slot() -> Filtered<Slot, ExportFilter, Registry> {
    Slot.with_filter(ExportFilter)
}

/// Starts exporting to `config` (the first configuration wins for the process: a later bus with
/// another one is warned about, not refused). Must be called within the tokio runtime the batch
/// span processor is to run on.
pub(crate) fn install(config: &OtlpConfig) -> Result<()> {
    // One exporter even when two buses open at once.
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _guard = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(exporter) = EXPORTER.get() {
        if exporter.config != *config {
            tracing::warn!(
                endpoint = %exporter.config.endpoint,
                ignored = %config.endpoint,
                "spans are already exported over OTLP for this process; this bus's tracing.otlp is ignored"
            );
        }
        return Ok(());
    }
    if !crate::log_forward::install() {
        tracing::warn!(
            "another global tracing subscriber was installed first: the bus's spans are not exported over OTLP"
        );
        return Ok(());
    }
    let exporter = build(config)?;
    let _ = EXPORTER.set(exporter);
    Ok(())
}

fn build(config: &OtlpConfig) -> Result<Exporter> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        EventBusError::InvalidConfig(format!("tracing.otlp: cannot build the {what}: {e}"))
    };
    // reqwest is built without a default rustls provider; ring is ours (installing twice is fine).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| failed("HTTP client", &e))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.endpoint.as_str())
        .build()
        .map_err(|e| failed("exporter", &e))?;
    // On the tokio runtime: the exporter's client is async, and the SDK's default processor
    // would block a thread of its own on it.
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer(crate::trace_context::MESSAGING_SYSTEM);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false);
    Ok(Exporter {
        config: config.clone(),
        provider,
        layer,
    })
}

/// Sends the spans ended so far (bus close), waiting at most [`FLUSH_TIMEOUT`].
pub(crate) async fn flush() {
    let Some(exporter) = EXPORTER.get() else {
        return;
    };
    // The SDK's flush blocks its caller until the processor task (on this runtime) has exported.
    let provider = exporter.provider.clone();
    let flushed = tokio::task::spawn_blocking(move || provider.force_flush());
    match tokio::time::timeout(FLUSH_TIMEOUT, flushed).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "OTLP span export failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "OTLP span flush failed"),
        Err(_) => tracing::warn!("OTLP span flush timed out"),
    }
}

/// Names `span` `{operation} {destination}` for export and, when `event` carries a valid W3C
/// trace context, makes it the span's parent so the span joins the publisher's trace.
pub(crate) fn export_as(span: &Span, operation: &str, destination: &str, event: Option<&Event>) {
    if span.is_disabled() || EXPORTER.get().is_none() {
        return;
    }
    span.record("otel.name", format!("{operation} {destination}").as_str());
    let Some(trace) = event.and_then(TraceContext::of) else {
        return;
    };
    let mut carrier = HashMap::with_capacity(2);
    carrier.insert("traceparent".to_string(), trace.traceparent);
    if let Some(state) = trace.tracestate {
        carrier.insert("tracestate".to_string(), state);
    }
    let parent = TraceContextPropagator::new().extract(&carrier);
    // Fails only when the span is not exported after all; then there is nothing to join.
    let _ = span.set_parent(parent);
}

/// Lets the messaging spans through to the exporter, at any level, once there is one.
pub(crate) struct ExportFilter;

impl Filter<Registry> for ExportFilter {
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: &Context<'_, Registry>) -> bool {
        EXPORTER.get().is_some() && exported(metadata)
    }

    fn callsite_enabled(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if exported(metadata) {
            // The exporter may come later, so ask again each time.
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
}

fn exported(metadata: &Metadata<'_>) -> bool {
    metadata.is_span() && metadata.fields().field(EXPORTED_FIELD).is_some()
}

impl Layer<Registry> for Slot {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, Registry>) {
        if let Some(e) = EXPORTER.get() {
            e.layer.on_new_span(attrs, id, ctx);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, Registry>) {
        if let Some(e) = EXPORTER.get() {
            e.layer.on_record(id, values, ctx);
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, Registry>) {
        if let Some(e) = EXPORTER.get() {
            e.layer.on_follows_from(id, follows, ctx);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, Registry>) {
        if let Some(e) = EXPORTER.get() {
            e.layer.on_event(event, ctx);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, Registry>) {
        if let Some(e) = EXPORTER.get() {
            e.layer.on_enter(id, ctx);
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, Registry>) {
        if let Some(e) = EXPORTER.get() {
            e.layer.on_exit(id, ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, Registry>) {
        if let Some(e) = EXPORTER.get() {
            e.layer.on_close(id, ctx);
        }
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, Registry>) {
        if let Some(e) = EXPORTER.get() {
            e.layer.on_id_change(old, new, ctx);
        }
    }

    // `OpenTelemetrySpanExt::set_parent` finds the layer by downcasting the subscriber.
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: the exporter is in a static, so what it points into lives as long as asked.
        EXPORTER
            .get()
            .and_then(|e| unsafe { e.layer.downcast_raw(id) })
    }
}
