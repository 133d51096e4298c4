//! Webhook state on SQLite (migrations/sqlite/0003_webhooks.sql). NOT YET IMPLEMENTED: being
//! written; every call fails with STORE_UNAVAILABLE until then.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::sqlite::SqliteStore;
use super::webhooks::{
    Delivery, DeliveryStatus, Disabled, DueDelivery, Endpoint, EndpointPatch, NewEndpoint, Outcome,
    WebhookStore,
};
use crate::error::{EventBusError, Result};

fn todo<T>() -> Result<T> {
    Err(EventBusError::StoreUnavailable(
        "webhooks are not implemented on SQLite yet".into(),
    ))
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn insert_endpoint(&self, _e: &NewEndpoint) -> Result<Endpoint> {
        todo()
    }
    async fn endpoints(&self, _t: Option<&str>) -> Result<Vec<Endpoint>> {
        todo()
    }
    async fn endpoint(&self, _id: Uuid) -> Result<Option<Endpoint>> {
        todo()
    }
    async fn update_endpoint(&self, _id: Uuid, _p: &EndpointPatch) -> Result<Option<Endpoint>> {
        todo()
    }
    async fn remove_endpoint(&self, _id: Uuid) -> Result<bool> {
        todo()
    }
    async fn claim_due(
        &self,
        _limit: usize,
        _lease: Duration,
        _skip: &[Uuid],
    ) -> Result<Vec<DueDelivery>> {
        Ok(Vec::new())
    }
    async fn record(&self, _o: &[Outcome], _d: u32) -> Result<Vec<Disabled>> {
        todo()
    }
    async fn deliveries(
        &self,
        _e: Option<Uuid>,
        _s: Option<DeliveryStatus>,
        _l: usize,
    ) -> Result<Vec<Delivery>> {
        todo()
    }
    async fn replay(&self, _d: u64) -> Result<bool> {
        todo()
    }
    async fn replay_failed(&self, _e: Uuid, _s: Option<DateTime<Utc>>) -> Result<u64> {
        todo()
    }
}
