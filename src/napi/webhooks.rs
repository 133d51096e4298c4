//! The webhook entry points of `NativeBus` (`js/webhooks.ts`): endpoints, deliveries, replays.

use napi::bindgen_prelude::PromiseRaw;
use napi::Env;
use napi_derive::napi;

use super::bus::NativeBus;
use super::{spawn, to_js_error};
use crate::event::json_array;
use crate::query::parse_time;
use crate::transport::webhook;

#[napi]
impl NativeBus {
    /// Registers a webhook endpoint (JSON); resolves with it and its secret (JSON).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn webhook_register<'env>(
        &self,
        env: &'env Env,
        input_json: String,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let webhooks = self.bus.webhooks().map_err(to_js_error)?.clone();
        spawn(env, async move {
            let input = webhook::RegisterInput::from_json(&input_json)?;
            let r = webhooks.register(input).await?;
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
        spawn(env, async move {
            let list = webhooks.list(tenant.as_deref()).await?;
            let rendered: Vec<String> = list
                .iter()
                .map(|e| webhook::endpoint_json(e, None))
                .collect();
            Ok(json_array(rendered.iter().map(String::as_str)))
        })
    }

    // Resolves with one endpoint (JSON); plain comments: doc comments would enter index.d.ts.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn webhook_get<'env>(
        &self,
        env: &'env Env,
        id: String,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let webhooks = self.bus.webhooks().map_err(to_js_error)?.clone();
        spawn(env, async move {
            let id = webhook::parse_endpoint_id(&id, "id")?;
            let e = webhooks.get(id).await?;
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
        spawn(env, async move {
            let id = webhook::parse_endpoint_id(&id, "id")?;
            let input = webhook::UpdateInput::from_json(&input_json)?;
            let r = webhooks.update(id, input).await?;
            Ok(webhook::endpoint_json(&r.endpoint, r.secret.as_deref()))
        })
    }

    // Removes an endpoint.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn webhook_remove<'env>(
        &self,
        env: &'env Env,
        id: String,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let webhooks = self.bus.webhooks().map_err(to_js_error)?.clone();
        spawn(env, async move {
            let id = webhook::parse_endpoint_id(&id, "id")?;
            webhooks.remove(id).await
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
        spawn(env, async move {
            let filter = webhook::DeliveryFilter::from_json(&filter_json)?;
            let list = webhooks.deliveries(filter).await?;
            let rendered: Vec<String> = list.iter().map(webhook::delivery_json).collect();
            Ok(json_array(rendered.iter().map(String::as_str)))
        })
    }

    // Makes one delivery due again.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn webhook_replay<'env>(
        &self,
        env: &'env Env,
        delivery_id: f64,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let webhooks = self.bus.webhooks().map_err(to_js_error)?.clone();
        spawn(env, async move {
            let id = webhook::parse_delivery_id(delivery_id)?;
            webhooks.replay(id).await
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
        spawn(env, async move {
            let id = webhook::parse_endpoint_id(&endpoint_id, "endpointId")?;
            let since = parse_time(since.as_deref(), "since")?;
            Ok(webhooks.replay_failed(id, since).await? as f64)
        })
    }
}
