//! Ways events leave the process besides in-process handlers.

pub mod metrics_http;
pub mod sse;
pub mod webhook;
