//! The napi layer: converts between JavaScript and the core. No behaviour lives here; every rule is
//! in the core and tested by `cargo test`. Events cross as JSON text (the cheapest crossing
//! measured), errors as `CODE: message` reasons that the TS wrapper turns into `EventBusError`.
//! Split by area as `js/` is: `bus`, `webhooks`, `sse`.

mod bus;
mod completions;
mod intake;
mod js_callbacks;
mod sse;
mod webhooks;

use std::future::Future;

use napi::bindgen_prelude::{PromiseRaw, ToNapiValue};
use napi::Env;

use crate::error::EventBusError;
use crate::middleware::Scope;

fn to_js_error(e: EventBusError) -> napi::Error {
    napi::Error::from_reason(format!("{}: {}", e.code(), e))
}

fn callback_error(e: napi::Error) -> napi::Error {
    napi::Error::from_reason(format!(
        "INVALID_CONFIG: could not register callback: {}",
        e.reason
    ))
}

fn scope(tenant: Option<String>) -> Scope {
    Scope { tenant_id: tenant }
}

/// The shape of every async entry point: `work` (parse the input, call the core, render the
/// result) runs on tokio, and its error reaches JS as a `CODE: message` rejection.
fn spawn<'env, T, F>(env: &'env Env, work: F) -> napi::Result<PromiseRaw<'env, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = crate::error::Result<T>> + Send + 'static,
{
    env.spawn_future(async move { work.await.map_err(to_js_error) })
}
