//! The SSE entry points (`js/sse.ts`): a server of its own, or streams for `@Sse()` controllers.

use std::sync::Arc;

use napi::bindgen_prelude::{Function, Promise, PromiseRaw};
use napi::Env;
use napi_derive::napi;

use super::bus::NativeBus;
use super::js_callbacks::JsAuthorizer;
use super::{callback_error, scope, spawn};
use crate::transport::sse::server::{ListenOptions, SseServer};
use crate::transport::sse::{self, Authorizer, Stream, StreamOptions};

// A running SSE server (plain comments here: doc comments would enter native/index.d.ts).
#[napi]
pub struct NativeSseServer {
    server: Arc<SseServer>,
}

#[napi]
impl NativeSseServer {
    // Where the server listens.
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.server.url.clone()
    }

    /// Ends every stream of this server and stops listening.
    #[napi]
    pub async fn close(&self) {
        self.server.close().await;
    }
}

// One event stream, read with `next`.
#[napi]
pub struct NativeSseStream {
    stream: tokio::sync::Mutex<Option<Stream>>,
    /// Set by `close`, so a `next` waiting for an event returns at once.
    closed: tokio::sync::watch::Sender<bool>,
}

#[napi]
impl NativeSseStream {
    /// The next messages as a JSON array of `{ id, type, data }` (data: the event JSON), or null
    /// when the stream ended.
    #[napi]
    pub async fn next(&self) -> Option<String> {
        let mut closed = self.closed.subscribe();
        if *closed.borrow() {
            return None;
        }
        let mut slot = self.stream.lock().await;
        let stream = slot.as_mut()?;
        let batch = tokio::select! {
            batch = stream.next_batch(256) => batch,
            _ = closed.changed() => None,
        };
        match batch {
            Some(batch) => Some(sse::messages_json(&batch)),
            None => {
                *slot = None;
                None
            }
        }
    }

    /// Ends the stream (unsubscribes); a pending `next` resolves with null.
    #[napi]
    pub async fn close(&self) {
        let _ = self.closed.send(true);
        self.stream.lock().await.take();
    }
}

#[napi]
impl NativeBus {
    /// Starts an SSE server; `authorize` receives the request (JSON) and resolves with a grant
    /// (JSON) or null to refuse.
    #[napi(ts_return_type = "Promise<NativeSseServer>")]
    pub fn sse_listen<'env>(
        &self,
        env: &'env Env,
        options_json: String,
        #[napi(
            ts_arg_type = "((requestJson: string) => Promise<string | null>) | undefined | null"
        )]
        authorize: Option<Function<String, Promise<Option<String>>>>,
    ) -> napi::Result<PromiseRaw<'env, NativeSseServer>> {
        let authorizer: Option<Arc<dyn Authorizer>> = match authorize {
            Some(f) => Some(Arc::new(JsAuthorizer::new(&f).map_err(callback_error)?)),
            None => None,
        };
        let bus = self.bus.clone();
        spawn(env, async move {
            let options = ListenOptions::from_json(&options_json)?;
            let server = bus.sse_listen(options, authorizer).await?;
            Ok(NativeSseServer { server })
        })
    }

    /// Opens an event stream (replay after lastEventId, then live) for `@Sse()` controllers.
    #[napi(ts_return_type = "Promise<NativeSseStream>")]
    pub fn sse_stream<'env>(
        &self,
        env: &'env Env,
        options_json: String,
        tenant: Option<String>,
    ) -> napi::Result<PromiseRaw<'env, NativeSseStream>> {
        let bus = self.bus.clone();
        spawn(env, async move {
            let options = StreamOptions::from_json(&options_json)?;
            let stream = bus.sse_stream(options, &scope(tenant)).await?;
            Ok(NativeSseStream {
                stream: tokio::sync::Mutex::new(Some(stream)),
                closed: tokio::sync::watch::channel(false).0,
            })
        })
    }
}
