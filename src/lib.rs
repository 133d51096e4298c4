//! @situs/event-bus: the Rust core (plain Rust, no napi types) and, in `napi`, the thin layer that
//! converts between it and JavaScript.

mod backoff;
pub mod batcher;
pub mod bus;
pub mod config;
pub mod consumer_group;
pub mod error;
pub mod event;
pub mod health;
pub mod in_flight;
mod json_input;
pub mod log_forward;
pub mod metrics;
pub mod middleware;
#[cfg(feature = "otlp")]
mod otlp;
pub mod pattern;
pub mod query;
mod retention;
pub mod router;
pub mod store;
pub mod tailer;
pub mod trace_context;
pub mod transport;

#[cfg(feature = "napi")]
mod napi;

pub use bus::{EventBus, Published};
pub use config::Config;
pub use error::{EventBusError, Result};
pub use event::{Event, SharedEvent, StoredEvent};
pub use middleware::{Middleware, Scope};
pub use router::{HandlerFailure, Sink, SubscriberFilter, Subscription};
