//! Adapters from JS functions (as weak threadsafe functions, so they never keep Node alive) to the
//! core's `Sink`, `Middleware` and `LogSink` traits. They only convert.

use async_trait::async_trait;
use napi::bindgen_prelude::{FromNapiValue, Function, Promise};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;

use crate::error::{EventBusError, Result};
use crate::event::{json_array, Event, SharedEvent};
use crate::log_forward::{LogRecord, LogSink};
use crate::middleware::{Middleware, Scope};
use crate::router::{Handled, HandlerFailure, Sink};
use crate::transport::sse::{AuthRequest, Authorizer, Grant};

pub type Tsfn<Return> = ThreadsafeFunction<String, Return, String, Status, false, true>;

/// A weak threadsafe function: pending calls never keep Node alive.
pub fn weak<Return: FromNapiValue + 'static>(
    f: &Function<String, Return>,
) -> napi::Result<Tsfn<Return>> {
    f.build_threadsafe_function()
        .callee_handled::<false>()
        .weak::<true>()
        .build()
}

pub struct JsSink {
    tsfn: Tsfn<Promise<String>>,
}

impl JsSink {
    pub fn new(f: &Function<String, Promise<String>>) -> napi::Result<JsSink> {
        Ok(JsSink { tsfn: weak(f)? })
    }
}

/// What JS's deliver callback answers: `''` (all handled, untimed), a failures array, or
/// `{"failures"?: […], "seconds": […]}` when handlers are timed.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum JsHandled {
    Failures(Vec<HandlerFailure>),
    Timed {
        #[serde(default)]
        failures: Vec<HandlerFailure>,
        seconds: Vec<f64>,
    },
}

#[async_trait]
impl Sink for JsSink {
    async fn deliver(&self, events: &[SharedEvent]) -> Vec<HandlerFailure> {
        self.deliver_timed(events).await.failures
    }

    async fn deliver_timed(&self, events: &[SharedEvent]) -> Handled {
        let batch = json_array(events.iter().map(|e| e.json()));
        let outcome = match self.tsfn.call_async(batch).await {
            Ok(promise) => promise.await,
            Err(e) => Err(e),
        };
        let all_failed = |message: String| {
            events
                .iter()
                .map(|e| HandlerFailure {
                    position: e.position,
                    message: message.clone(),
                })
                .collect()
        };
        let failures_only = |failures| Handled {
            failures,
            seconds: None,
        };
        match outcome {
            Ok(answer) if answer.is_empty() => Handled::default(),
            Ok(answer) => match serde_json::from_str(&answer) {
                Ok(JsHandled::Failures(failures)) => failures_only(failures),
                Ok(JsHandled::Timed { failures, seconds }) => Handled {
                    failures,
                    seconds: Some(seconds),
                },
                Err(e) => failures_only(all_failed(format!("unreadable handler result: {e}"))),
            },
            Err(e) => failures_only(all_failed(e.reason)),
        }
    }
}

pub struct JsMiddleware {
    tsfn: Tsfn<Promise<Option<String>>>,
}

impl JsMiddleware {
    pub fn new(f: &Function<String, Promise<Option<String>>>) -> napi::Result<JsMiddleware> {
        Ok(JsMiddleware { tsfn: weak(f)? })
    }
}

#[async_trait]
impl Middleware for JsMiddleware {
    fn name(&self) -> &str {
        "js"
    }

    async fn process(&self, event: Event, _scope: &Scope) -> Result<Event> {
        let rejected = |e: napi::Error| EventBusError::Rejected(e.reason);
        let promise = self
            .tsfn
            .call_async(event.to_json(None))
            .await
            .map_err(rejected)?;
        match promise.await.map_err(rejected)? {
            None => Ok(event),
            Some(json) => event.replaced_from_json(&json),
        }
    }
}

pub struct JsAuthorizer {
    tsfn: Tsfn<Promise<Option<String>>>,
}

impl JsAuthorizer {
    pub fn new(f: &Function<String, Promise<Option<String>>>) -> napi::Result<JsAuthorizer> {
        Ok(JsAuthorizer { tsfn: weak(f)? })
    }
}

#[async_trait]
impl Authorizer for JsAuthorizer {
    async fn authorize(&self, request: AuthRequest) -> Result<Option<Grant>> {
        let failed = |e: napi::Error| EventBusError::Rejected(format!("authorize: {}", e.reason));
        let json = serde_json::to_string(&request)
            .map_err(|e| EventBusError::Rejected(format!("authorize: {e}")))?;
        let promise = self.tsfn.call_async(json).await.map_err(failed)?;
        match promise.await.map_err(failed)? {
            None => Ok(None),
            Some(grant) => crate::json_input::parse_object(&grant, "authorize result", "")
                .map(Some)
                .map_err(EventBusError::Rejected),
        }
    }
}

pub struct JsLogSink {
    tsfn: Tsfn<()>,
}

impl JsLogSink {
    pub fn new(f: &Function<String, ()>) -> napi::Result<JsLogSink> {
        Ok(JsLogSink { tsfn: weak(f)? })
    }
}

impl LogSink for JsLogSink {
    fn log(&self, record: LogRecord) {
        if let Ok(json) = serde_json::to_string(&record) {
            // Logging never blocks the core; a full queue drops the record.
            self.tsfn
                .call(json, ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}
