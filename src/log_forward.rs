//! Forwards `tracing` records to per-bus log sinks (the JS `logger` option), so a NestJS Logger can
//! show what the Rust core logs. A record belongs to the bus whose root span it was emitted under.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Once, RwLock};

use serde::Serialize;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogLevel;

/// One log record, as the JS logger receives it.
#[derive(Debug, Clone, Serialize)]
pub struct LogRecord {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: &'static str,
    /// The Rust module that logged it.
    pub target: String,
    /// The formatted message.
    pub message: String,
    /// The record's other fields (an error, a count, …), debug-formatted when not plain values.
    pub fields: Map<String, Value>,
}

/// Where one bus's log records go (`EventBus::open`): those at its `logLevel` or more severe.
pub trait LogSink: Send + Sync + 'static {
    /// Called on the thread that logged, so it must be quick and must not block.
    fn log(&self, record: LogRecord);
}

/// The span field that marks a bus's root span.
pub const BUS_FIELD: &str = "bus";

struct Registered {
    level: LogLevel,
    sink: Arc<dyn LogSink>,
}

static SINKS: RwLock<Option<HashMap<u64, Registered>>> = RwLock::new(None);
/// The most verbose level any registered sink wants (0 = none); a cheap early filter.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(0);
static NEXT_BUS: AtomicU64 = AtomicU64::new(1);
static INSTALL: Once = Once::new();

fn rank(level: LogLevel) -> u8 {
    level as u8 + 1
}

fn rank_of(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

fn recompute_max(sinks: &HashMap<u64, Registered>) {
    let max = sinks.values().map(|r| rank(r.level)).max().unwrap_or(0);
    MAX_LEVEL.store(max, Ordering::Relaxed);
}

/// Keeps a sink registered for one bus; dropping it unregisters.
pub struct Registration {
    bus: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut guard = SINKS.write().unwrap_or_else(|p| p.into_inner());
        if let Some(sinks) = guard.as_mut() {
            sinks.remove(&self.bus);
            recompute_max(sinks);
        }
    }
}

/// A fresh bus id for the `bus` field of a root span.
pub fn next_bus_id() -> u64 {
    NEXT_BUS.fetch_add(1, Ordering::Relaxed)
}

/// Routes records under the bus's root span to `sink`. Installs the forwarding layer as the global
/// `tracing` subscriber the first time; if the host already installed one, add [`ForwardLayer`] to it.
pub fn register(bus: u64, level: LogLevel, sink: Arc<dyn LogSink>) -> Registration {
    install();
    let mut guard = SINKS.write().unwrap_or_else(|p| p.into_inner());
    let sinks = guard.get_or_insert_with(HashMap::new);
    sinks.insert(bus, Registered { level, sink });
    recompute_max(sinks);
    Registration { bus }
}

/// Installs the global subscriber once: [`ForwardLayer`] and, with the `otlp` feature, the slot
/// an OTLP exporter is put in later. Each has its own per-layer filter, so exported debug spans
/// do not depend on the JS logger's level and the logger does not see more because of them.
/// Returns whether ours is the global subscriber (a Rust host may have installed its own first;
/// that is the host's choice).
pub(crate) fn install() -> bool {
    static OURS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    INSTALL.call_once(|| {
        let forward = ForwardLayer.with_filter(ForwardFilter);
        #[cfg(feature = "otlp")]
        let installed = tracing_subscriber::registry()
            .with(crate::otlp::slot())
            .with(forward)
            .try_init();
        #[cfg(not(feature = "otlp"))]
        let installed = tracing_subscriber::registry().with(forward).try_init();
        OURS.store(installed.is_ok(), Ordering::Relaxed);
    });
    OURS.load(Ordering::Relaxed)
}

/// [`ForwardLayer`]'s filtering as a per-layer filter (the same test as its `enabled`).
struct ForwardFilter;

impl<S> tracing_subscriber::layer::Filter<S> for ForwardFilter {
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: &Context<'_, S>) -> bool {
        forwarded(metadata)
    }

    fn callsite_enabled(
        &self,
        _metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Sinks come and go at run time, so never let tracing cache a yes/no per callsite.
        tracing::subscriber::Interest::sometimes()
    }
}

/// Root spans are always kept so records can be attributed; everything else is filtered by the
/// most verbose registered sink.
fn forwarded(metadata: &Metadata<'_>) -> bool {
    metadata.fields().field(BUS_FIELD).is_some()
        || rank_of(metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// The id of the bus a span belongs to, stored in the span's extensions.
struct BusId(u64);

#[derive(Default)]
struct BusIdVisitor(Option<u64>);

impl Visit for BusIdVisitor {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == BUS_FIELD {
            self.0 = Some(value);
        }
    }
    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

#[derive(Default)]
struct RecordVisitor {
    message: String,
    fields: Map<String, Value>,
}

impl Visit for RecordVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields
            .insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields
            .insert(field.name().to_string(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields
            .insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields
            .insert(field.name().to_string(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields
                .insert(field.name().to_string(), Value::from(text));
        }
    }
}

pub struct ForwardLayer;

impl<S> Layer<S> for ForwardLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(
        &self,
        _metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Sinks come and go at run time, so never let tracing cache a yes/no per callsite.
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        forwarded(metadata)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut visitor = BusIdVisitor::default();
        attrs.record(&mut visitor);
        let bus = visitor.0.or_else(|| {
            span.parent()
                .and_then(|p| p.extensions().get::<BusId>().map(|b| b.0))
        });
        if let Some(bus) = bus {
            span.extensions_mut().insert(BusId(bus));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let Some(bus) = ctx.event_scope(event).and_then(|mut scope| {
            scope.find_map(|span| span.extensions().get::<BusId>().map(|b| b.0))
        }) else {
            return;
        };
        let sink = {
            let guard = SINKS.read().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref().and_then(|s| s.get(&bus)) {
                Some(r) if rank_of(event.metadata().level()) <= rank(r.level) => r.sink.clone(),
                _ => return,
            }
        };
        let mut visitor = RecordVisitor::default();
        event.record(&mut visitor);
        sink.log(LogRecord {
            level: level_name(event.metadata().level()),
            target: event.metadata().target().to_string(),
            message: visitor.message,
            fields: visitor.fields,
        });
    }
}
