//! The bus entry points (`js/event-bus.ts`): opening, publishing, subscribing, middleware,
//! queries, retention, consumer-group dead letters and the lifecycle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{Function, Promise, PromiseRaw, Uint32Array};
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi::Env;
use napi_derive::napi;

use super::completions::{Completions, QUIET};
use super::intake::{Batch, Intake};
use super::js_callbacks::{self, JsLogSink, JsMiddleware, JsSink};
use super::{callback_error, scope, spawn, to_js_error};
use crate::bus::{EventBus, Published};
use crate::config::Config;
use crate::consumer_group::{parse_dead_letter_id, parse_subscribe_options, DeadLetterFilter};
use crate::event::{json_array, Event};
use crate::log_forward::LogSink;
use crate::middleware::security::check_scope_tenant;
use crate::query::{parse_archive_limit, parse_required_time, EventFilter};
use crate::router::Subscription;

#[napi]
pub struct NativeBus {
    // `pub(super)`: the webhook and SSE entry points, beside this file, reach the core through it.
    pub(super) bus: EventBus,
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
    spawn(env, async move {
        let config = Config::resolve(&options_json, &env_vars)?;
        let bus = EventBus::open(config, sink).await?;
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
        spawn(env, async move {
            let events = Event::many_from_json(&events_json)?;
            let published = admitted.publish_many(events, &scope(tenant)).await?;
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

    /// Archives events older than `older_than` (ISO-8601), at most `limit` of them when given;
    /// resolves with how many moved.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn archive<'env>(
        &self,
        env: &'env Env,
        older_than: String,
        limit: Option<f64>,
    ) -> napi::Result<PromiseRaw<'env, f64>> {
        let admitted = self.bus.admit().map_err(to_js_error)?;
        spawn(env, async move {
            let cutoff = parse_required_time(Some(&older_than), "olderThan")?;
            let limit = limit.map(parse_archive_limit).transpose()?;
            Ok(admitted.archive(cutoff, limit).await? as f64)
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
        spawn(env, async move {
            let filter = EventFilter::from_json(&filter_json)?;
            let page = admitted.get_events(filter, &scope(tenant)).await?;
            let events = json_array(page.events.iter().map(|e| e.json()));
            // A JSON string or null; `Value`'s rendering cannot fail, unlike `to_string`'s.
            let cursor = serde_json::Value::from(page.next_cursor);
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
        spawn(env, async move {
            let filter = DeadLetterFilter::from_json(&options_json)?;
            let letters = bus
                .dead_letters(filter.group.as_deref(), filter.status, filter.limit)
                .await?;
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
        spawn(env, async move {
            let id = parse_dead_letter_id(id)?;
            bus.retry_dead_letter(id).await
        })
    }

    #[napi]
    pub fn metrics(&self) -> napi::Result<String> {
        serde_json::to_string(&self.bus.metrics())
            .map_err(|e| napi::Error::from_reason(e.to_string()))
    }

    /// `bus.health()` as JSON.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn health<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, String>> {
        let bus = self.bus.clone();
        spawn(env, async move {
            serde_json::to_string(&bus.health().await)
                .map_err(|e| crate::error::EventBusError::StoreUnavailable(e.to_string()))
        })
    }

    /// Reads the store's figures for the metrics now.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn refresh_metrics<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let bus = self.bus.clone();
        spawn(env, async move { bus.refresh_metrics().await })
    }

    /// Prometheus text exposition.
    #[napi]
    pub fn metrics_text(&self) -> String {
        self.bus.metrics_text()
    }

    /// Where `/metrics` is served (`metrics.listen`), if it is.
    #[napi(getter)]
    pub fn metrics_url(&self) -> Option<String> {
        self.bus.metrics_url()
    }

    /// Whether handlers should be timed (`metrics.enabled`).
    #[napi(getter)]
    pub fn metrics_enabled(&self) -> bool {
        self.bus.config().metrics.enabled
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
