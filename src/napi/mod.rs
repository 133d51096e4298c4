//! The napi layer: converts between JavaScript and the core. No behaviour lives here; every rule is
//! in the core and tested by `cargo test`. Events cross as JSON text (the cheapest crossing
//! measured), errors as `CODE: message` reasons that the TS wrapper turns into `EventBusError`.

mod completions;
mod intake;
mod js_callbacks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{Function, Promise, PromiseRaw, Uint32Array};
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi::Env;
use napi_derive::napi;

use crate::bus::{EventBus, Published};
use crate::config::Config;
use crate::consumer_group::{parse_dead_letter_id, parse_subscribe_options, DeadLetterFilter};
use crate::error::EventBusError;
use crate::event::{json_array, Event};
use crate::log_forward::LogSink;
use crate::middleware::security::check_scope_tenant;
use crate::middleware::Scope;
use crate::query::{parse_required_time, parse_time, EventFilter};
use crate::router::Subscription;
use crate::transport::webhook;
use completions::{Completions, QUIET};
use intake::{Batch, Intake};
use js_callbacks::{JsAuthorizer, JsLogSink, JsMiddleware, JsSink};

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

#[napi]
pub struct NativeBus {
    bus: EventBus,
    /// Taken at `close`: its task holds the settle callback, which holds this bus (a cycle GC
    /// cannot see through), and ends once every reply is in; in-flight publishes keep their own
    /// senders until they report.
    completions: Mutex<Option<Completions>>,
    /// The callback told when pending deliveries leave or reach zero; dropped at `close` (it
    /// holds this bus through its JS closure, as the publish sink does).
    delivery_watch: Arc<Mutex<Option<js_callbacks::Tsfn<()>>>>,
    /// Where `publish_batch` hands its events.
    intake: Intake,
}

#[napi]
pub struct NativeSseServer {
    server: Arc<crate::transport::sse::server::SseServer>,
}

#[napi]
impl NativeSseServer {
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

#[napi]
pub struct NativeSseStream {
    stream: tokio::sync::Mutex<Option<crate::transport::sse::Stream>>,
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
            Some(batch) => Some(crate::transport::sse::messages_json(&batch)),
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
pub struct NativeSubscription {
    subscription: Subscription,
}

#[napi]
impl NativeSubscription {
    #[napi]
    pub fn unsubscribe(&self) {
        self.subscription.unsubscribe();
    }
}

/// Opens a bus. `logger` receives each log record as a JSON string.
#[napi(ts_return_type = "Promise<NativeBus>")]
pub fn open_bus<'env>(
    env: &'env Env,
    options_json: String,
    env_vars: HashMap<String, String>,
    #[napi(ts_arg_type = "((record: string) => void) | undefined | null")] logger: Option<
        Function<String, ()>,
    >,
) -> napi::Result<PromiseRaw<'env, NativeBus>> {
    let sink: Option<Arc<dyn LogSink>> = match logger {
        Some(f) => Some(Arc::new(JsLogSink::new(&f).map_err(callback_error)?)),
        None => None,
    };
    env.spawn_future(async move {
        let config = Config::resolve(&options_json, &env_vars).map_err(to_js_error)?;
        let bus = EventBus::open(config, sink).await.map_err(to_js_error)?;
        Ok(NativeBus {
            intake: Intake::start(&bus),
            bus,
            completions: Mutex::new(None),
            delivery_watch: Arc::default(),
        })
    })
}

#[napi]
impl NativeBus {
    // publish, publishMany and getEvents are admitted synchronously, when JS calls them, so a
    // call made before `close()` is drained rather than refused; the work runs on tokio.

    /// Where `publish` results go: `settle` receives JSON arrays of `[id, event]` or
    /// `[id, null, "CODE: message"]`. Set once, before the first `publish`.
    #[napi]
    pub fn set_publish_sink(&self, settle: Function<String, ()>) -> napi::Result<()> {
        let mut slot = self.completions.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return Err(napi::Error::from_reason(
                "INVALID_CONFIG: the publish sink is already set",
            ));
        }
        *slot = Some(Completions::start(&self.bus, &settle).map_err(callback_error)?);
        Ok(())
    }

    /// `changed` is called whenever `pendingDeliveries` goes from zero to more or back (it reads
    /// the getter: calls may arrive out of order). Set once.
    #[napi]
    pub fn watch_deliveries(&self, changed: Function<String, ()>) -> napi::Result<()> {
        let tsfn = js_callbacks::weak(&changed).map_err(callback_error)?;
        *self
            .delivery_watch
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(tsfn);
        let watch = self.delivery_watch.clone();
        if !self.bus.watch_pending_deliveries(move || {
            if let Some(tsfn) = &*watch.lock().unwrap_or_else(|p| p.into_inner()) {
                tsfn.call(String::new(), ThreadsafeFunctionCallMode::NonBlocking);
            }
        }) {
            return Err(napi::Error::from_reason(
                "INVALID_CONFIG: deliveries are already watched",
            ));
        }
        Ok(())
    }

    /// JS has handled the oldest `batches` batches given to the publish sink (and whatever their
    /// callers did at once).
    #[napi]
    pub fn publishes_settled(&self, batches: u32) {
        if let Some(completions) = &*self.completions.lock().unwrap_or_else(|p| p.into_inner()) {
            completions.settled(batches);
        }
    }

    /// Publishes each event of `events` on its own — each is stored or refused alone, unlike
    /// `publishMany` — in one call for many `publish` calls (see `intake`). `events` holds their
    /// JSON texts separated by newlines (one string crosses far cheaper than an array of them;
    /// JSON.stringify never writes a raw newline). `ids[i]` numbers the i-th event's result at
    /// the publish sink; with the top bit set the result carries no event (`[id]`: the caller
    /// does not read it, so neither side renders or parses it).
    #[napi]
    pub fn publish_batch(
        &self,
        ids: Uint32Array,
        events: String,
        tenant: Option<String>,
    ) -> napi::Result<()> {
        let mut ranges = Vec::with_capacity(ids.len());
        let mut start = 0;
        for line in events.split('\n') {
            ranges.push(start..start + line.len());
            start += line.len() + 1;
        }
        if ranges.len() != ids.len() {
            return Err(napi::Error::from_reason(format!(
                "INVALID_EVENT: {} ids for {} events",
                ids.len(),
                ranges.len()
            )));
        }
        // Admitted now, while JS calls, so `close()` called next drains them (see above).
        let admitted = ids
            .iter()
            .map(|_| self.bus.admit())
            .collect::<Result<Vec<_>, _>>()
            .map_err(to_js_error)?;
        let completions = self.completions.lock().unwrap_or_else(|p| p.into_inner());
        let completions = completions
            .as_ref()
            .ok_or_else(|| napi::Error::from_reason("INVALID_CONFIG: no publish sink is set"))?;
        completions.publishing(ids.len());
        let entries = ranges
            .into_iter()
            .zip(admitted)
            .zip(ids.iter())
            .map(|((range, admitted), &id)| {
                (
                    range,
                    admitted,
                    completions.reply(id & !QUIET, id & QUIET != 0),
                )
            })
            .collect();
        self.intake.send(Batch {
            text: events.into(),
            events: entries,
            scope: Arc::new(scope(tenant)),
        });
        Ok(())
    }

    /// Publishes a JSON array of events atomically; resolves with a JSON array.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn publish_many<'env>(
        &self,
        env: &'env Env,
        events_json: String,
        tenant: Option<String>,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let admitted = self.bus.admit().map_err(to_js_error)?;
        env.spawn_future(async move {
            let events = Event::many_from_json(&events_json).map_err(to_js_error)?;
            let published = admitted
                .publish_many(events, &scope(tenant))
                .await
                .map_err(to_js_error)?;
            let rendered: Vec<_> = published.iter().map(Published::json).collect();
            Ok(json_array(rendered.iter().map(|j| j.as_ref())))
        })
    }

    /// `handler` receives a JSON array of events and resolves with a JSON array of failures
    /// (`[{ position, message }]`, or an empty string when none failed). With `group` in the
    /// options, the handler must stop at the first failure of a batch.
    #[napi]
    pub fn subscribe(
        &self,
        patterns: Vec<String>,
        options_json: String,
        tenant: Option<String>,
        #[napi(ts_arg_type = "(eventsJson: string) => Promise<string>")] handler: Function<
            String,
            Promise<String>,
        >,
    ) -> napi::Result<NativeSubscription> {
        let sink = Arc::new(JsSink::new(&handler).map_err(callback_error)?);
        let (filter, group) = parse_subscribe_options(&options_json).map_err(to_js_error)?;
        let subscription = match group {
            Some(group) => self
                .bus
                .subscribe_group(&patterns, filter, group, &scope(tenant), sink),
            None => self.bus.subscribe(&patterns, filter, &scope(tenant), sink),
        }
        .map_err(to_js_error)?;
        Ok(NativeSubscription { subscription })
    }

    /// `middleware` receives an event (JSON) and resolves with the replacement (JSON), or null to
    /// keep it; a rejection rejects the publish.
    #[napi]
    pub fn use_middleware(
        &self,
        #[napi(ts_arg_type = "(eventJson: string) => Promise<string | null>")] middleware: Function<
            String,
            Promise<Option<String>>,
        >,
    ) -> napi::Result<u32> {
        let m = Arc::new(JsMiddleware::new(&middleware).map_err(callback_error)?);
        let id = self.bus.use_middleware(m).map_err(to_js_error)?;
        Ok(id as u32)
    }

    /// Archives events older than `older_than` (ISO-8601); resolves with how many moved.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn archive<'env>(
        &self,
        env: &'env Env,
        older_than: String,
    ) -> napi::Result<PromiseRaw<'env, f64>> {
        let admitted = self.bus.admit().map_err(to_js_error)?;
        env.spawn_future(async move {
            let cutoff =
                parse_required_time(Some(&older_than), "olderThan").map_err(to_js_error)?;
            Ok(admitted.archive(cutoff).await.map_err(to_js_error)? as f64)
        })
    }

    /// Checks a tenant id for `forTenant` by the same rules as an event's tenantId.
    #[napi]
    pub fn check_tenant(&self, tenant: String) -> napi::Result<()> {
        check_scope_tenant(&tenant).map_err(to_js_error)
    }

    #[napi]
    pub fn remove_middleware(&self, id: u32) -> bool {
        self.bus.remove_middleware(u64::from(id))
    }

    /// Resolves with `{ "events": [...], "nextCursor": string | null }` as JSON.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn get_events<'env>(
        &self,
        env: &'env Env,
        filter_json: String,
        tenant: Option<String>,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let admitted = self.bus.admit().map_err(to_js_error)?;
        env.spawn_future(async move {
            let filter = EventFilter::from_json(&filter_json).map_err(to_js_error)?;
            let page = admitted
                .get_events(filter, &scope(tenant))
                .await
                .map_err(to_js_error)?;
            let events = json_array(page.events.iter().map(|e| e.json()));
            let cursor = serde_json::to_string(&page.next_cursor)
                .map_err(|e| napi::Error::from_reason(e.to_string()))?;
            Ok(format!(r#"{{"events":{events},"nextCursor":{cursor}}}"#))
        })
    }

    /// Resolves with a JSON array of dead letters, newest first.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn dead_letters<'env>(
        &self,
        env: &'env Env,
        options_json: String,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let bus = self.bus.clone();
        env.spawn_future(async move {
            let filter = DeadLetterFilter::from_json(&options_json).map_err(to_js_error)?;
            let letters = bus
                .dead_letters(filter.group.as_deref(), filter.status, filter.limit)
                .await
                .map_err(to_js_error)?;
            let rendered: Vec<String> = letters.iter().map(|d| d.to_json()).collect();
            Ok(json_array(rendered.iter().map(String::as_str)))
        })
    }

    /// Marks a dead letter for re-delivery by its group.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn retry_dead_letter<'env>(
        &self,
        env: &'env Env,
        id: f64,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let bus = self.bus.clone();
        env.spawn_future(async move {
            let id = parse_dead_letter_id(id).map_err(to_js_error)?;
            bus.retry_dead_letter(id).await.map_err(to_js_error)
        })
    }

    /// Registers a webhook endpoint (JSON); resolves with it and its secret (JSON).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn webhook_register<'env>(
        &self,
        env: &'env Env,
        input_json: String,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let webhooks = self.bus.webhooks().map_err(to_js_error)?.clone();
        env.spawn_future(async move {
            let input = webhook::RegisterInput::from_json(&input_json).map_err(to_js_error)?;
            let r = webhooks.register(input).await.map_err(to_js_error)?;
            Ok(webhook::endpoint_json(&r.endpoint, r.secret.as_deref()))
        })
    }

    /// Resolves with a JSON array of endpoints (of one tenant when given).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn webhook_list<'env>(
        &self,
        env: &'env Env,
        tenant: Option<String>,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let webhooks = self.bus.webhooks().map_err(to_js_error)?.clone();
        env.spawn_future(async move {
            let list = webhooks
                .list(tenant.as_deref())
                .await
                .map_err(to_js_error)?;
            let rendered: Vec<String> = list
                .iter()
                .map(|e| webhook::endpoint_json(e, None))
                .collect();
            Ok(json_array(rendered.iter().map(String::as_str)))
        })
    }

    #[napi(ts_return_type = "Promise<string>")]
    pub fn webhook_get<'env>(
        &self,
        env: &'env Env,
        id: String,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let webhooks = self.bus.webhooks().map_err(to_js_error)?.clone();
        env.spawn_future(async move {
            let id = webhook::parse_endpoint_id(&id, "id").map_err(to_js_error)?;
            let e = webhooks.get(id).await.map_err(to_js_error)?;
            Ok(webhook::endpoint_json(&e, None))
        })
    }

    /// Updates an endpoint (JSON); resolves with it, and its new secret when rotated (JSON).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn webhook_update<'env>(
        &self,
        env: &'env Env,
        id: String,
        input_json: String,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let webhooks = self.bus.webhooks().map_err(to_js_error)?.clone();
        env.spawn_future(async move {
            let id = webhook::parse_endpoint_id(&id, "id").map_err(to_js_error)?;
            let input = webhook::UpdateInput::from_json(&input_json).map_err(to_js_error)?;
            let r = webhooks.update(id, input).await.map_err(to_js_error)?;
            Ok(webhook::endpoint_json(&r.endpoint, r.secret.as_deref()))
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn webhook_remove<'env>(
        &self,
        env: &'env Env,
        id: String,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let webhooks = self.bus.webhooks().map_err(to_js_error)?.clone();
        env.spawn_future(async move {
            let id = webhook::parse_endpoint_id(&id, "id").map_err(to_js_error)?;
            webhooks.remove(id).await.map_err(to_js_error)
        })
    }

    /// Resolves with a JSON array of deliveries, newest first, with their attempts.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn webhook_deliveries<'env>(
        &self,
        env: &'env Env,
        filter_json: String,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let webhooks = self.bus.webhooks().map_err(to_js_error)?.clone();
        env.spawn_future(async move {
            let filter = webhook::DeliveryFilter::from_json(&filter_json).map_err(to_js_error)?;
            let list = webhooks.deliveries(filter).await.map_err(to_js_error)?;
            let rendered: Vec<String> = list.iter().map(webhook::delivery_json).collect();
            Ok(json_array(rendered.iter().map(String::as_str)))
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn webhook_replay<'env>(
        &self,
        env: &'env Env,
        delivery_id: f64,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let webhooks = self.bus.webhooks().map_err(to_js_error)?.clone();
        env.spawn_future(async move {
            let id = webhook::parse_delivery_id(delivery_id).map_err(to_js_error)?;
            webhooks.replay(id).await.map_err(to_js_error)
        })
    }

    /// Makes an endpoint's dead deliveries (created since `since`, ISO-8601) due again.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn webhook_replay_failed<'env>(
        &self,
        env: &'env Env,
        endpoint_id: String,
        since: Option<String>,
    ) -> napi::Result<PromiseRaw<'env, f64>> {
        let webhooks = self.bus.webhooks().map_err(to_js_error)?.clone();
        env.spawn_future(async move {
            let id = webhook::parse_endpoint_id(&endpoint_id, "endpointId").map_err(to_js_error)?;
            let since = parse_time(since.as_deref(), "since").map_err(to_js_error)?;
            Ok(webhooks
                .replay_failed(id, since)
                .await
                .map_err(to_js_error)? as f64)
        })
    }

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
        let authorizer: Option<Arc<dyn crate::transport::sse::Authorizer>> = match authorize {
            Some(f) => Some(Arc::new(JsAuthorizer::new(&f).map_err(callback_error)?)),
            None => None,
        };
        let bus = self.bus.clone();
        env.spawn_future(async move {
            let options = crate::transport::sse::server::ListenOptions::from_json(&options_json)
                .map_err(to_js_error)?;
            let server = bus
                .sse_listen(options, authorizer)
                .await
                .map_err(to_js_error)?;
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
        env.spawn_future(async move {
            let options = crate::transport::sse::StreamOptions::from_json(&options_json)
                .map_err(to_js_error)?;
            let stream = bus
                .sse_stream(options, &scope(tenant))
                .await
                .map_err(to_js_error)?;
            Ok(NativeSseStream {
                stream: tokio::sync::Mutex::new(Some(stream)),
                closed: tokio::sync::watch::channel(false).0,
            })
        })
    }

    #[napi]
    pub fn metrics(&self) -> napi::Result<String> {
        serde_json::to_string(&self.bus.metrics())
            .map_err(|e| napi::Error::from_reason(e.to_string()))
    }

    /// Resolves once every event routed so far has been handled (a no-op round trip when idle).
    #[napi]
    pub async fn when_idle(&self) {
        self.bus.deliveries_idle().await;
    }

    /// Events routed to subscribers and not yet handled.
    #[napi(getter)]
    pub fn pending_deliveries(&self) -> u32 {
        u32::try_from(self.bus.pending_deliveries()).unwrap_or(u32::MAX)
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.bus.is_closed()
    }

    #[napi]
    pub async fn close(&self) {
        self.bus.close().await;
        self.completions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.delivery_watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}
