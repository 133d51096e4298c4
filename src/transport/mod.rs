//! Ways events leave the process besides in-process handlers.

pub mod webhook;
