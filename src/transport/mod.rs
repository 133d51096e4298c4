//! Ways events leave the process besides in-process handlers.

pub mod sse;
pub mod webhook;
