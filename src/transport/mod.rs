//! Ways events leave the process besides in-process handlers.

pub(crate) mod metrics_http;
pub(crate) mod sse;
pub mod webhook;
