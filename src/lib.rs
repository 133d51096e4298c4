//! @situs/event-bus: the Rust core (plain Rust, no napi types) and, in `napi`, the thin layer that
//! converts between it and JavaScript.

#![warn(missing_docs)]
// Without `napi`, what only the addon calls (SSE, webhook management, commit-wait hand-over) has
// no caller, so dead code is checked in the `napi` build.
#![cfg_attr(not(feature = "napi"), allow(dead_code))]

mod backoff;
pub(crate) mod batcher;
pub(crate) mod bus;
pub mod config;
pub mod consumer_group;
pub(crate) mod error;
pub(crate) mod event;
pub mod health;
pub(crate) mod in_flight;
mod json_input;
pub(crate) mod log_forward;
pub mod metrics;
pub(crate) mod middleware;
#[cfg(feature = "otlp")]
mod otlp;
pub mod pattern;
pub mod query;
mod retention;
pub(crate) mod router;
pub mod store;
pub(crate) mod tailer;
pub mod trace_context;
pub mod transport;

#[cfg(feature = "napi")]
mod napi;

pub use bus::{Admitted, EventBus, Published};
pub use config::Config;
pub use error::{EventBusError, Result};
pub use event::{Event, SharedEvent, StoredEvent};
pub use log_forward::{LogRecord, LogSink};
pub use metrics::{GroupLag, MetricsSnapshot, Totals};
pub use middleware::{Middleware, MiddlewareId, Scope};
pub use router::{Handled, HandlerFailure, Sink, StartFrom, SubscriberFilter, Subscription};
