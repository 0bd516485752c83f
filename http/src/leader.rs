//! What handlers need from the leader-only services, declared here and implemented by the
//! binary (http never imports the services themselves).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use state_machine::ids::{TenantId, TenantShardId};
use state_machine::{Generation, NodeAvailability, NodeId};

use crate::error::ApiError;

/// Soft state of one shard on the leader.
#[derive(Debug, Clone, Default)]
pub struct ShardStatus {
    pub is_reconciling: bool,
    pub last_error: String,
    pub pending_compute_notification: bool,
}

pub trait LeaderServices: Send + Sync {
    /// The startup reconcile has run (nodes heard from, observed state scanned).
    fn ready(&self) -> bool;
    fn availability(&self, node: NodeId) -> NodeAvailability;
    /// AZ for a new tenant, from the schedulable nodes.
    fn choose_az(&self) -> Option<String>;
    /// Schedules a tenant's shards, commits the intents and queues reconciles.
    fn schedule_tenant(&self, tenant: TenantId) -> BoxFuture<'_, Result<(), ApiError>>;
    /// Waits until every shard of the tenant matches its intent; false on timeout.
    fn wait_reconciled(&self, tenant: TenantId, timeout: Duration) -> BoxFuture<'_, bool>;
    /// A pageserver re-attached and was issued these generations.
    fn node_re_attached(&self, node: NodeId, issued: &[(TenantShardId, Generation)]);
    /// Operator override of a node's availability (Offline fails it over at once).
    fn set_availability(
        &self,
        node: NodeId,
        availability: NodeAvailability,
    ) -> BoxFuture<'_, Result<(), ApiError>>;
    fn shard_status(&self, shard: TenantShardId) -> ShardStatus;
    /// Shards observed on a node: `Some(true)` secondary, `Some(false)` attached, `None` unknown.
    fn observed_on(&self, node: NodeId) -> Vec<(TenantShardId, Option<bool>)>;
    /// Queues a reconcile for every shard that needs one; returns how many.
    fn reconcile_all(&self) -> usize;
    /// Cross-checks replicated state, the leader's views and derived counts.
    fn consistency_check(&self) -> BoxFuture<'_, Result<(), ApiError>>;
    /// Splits a tenant (upstream 5.3); answers the new shards, or the current ones when the
    /// tenant already is at `new_shard_count`.
    fn split_tenant(
        &self,
        tenant: TenantId,
        new_shard_count: u8,
        new_stripe_size: Option<u32>,
    ) -> BoxFuture<'_, Result<Vec<TenantShardId>, ApiError>>;
    /// A tenant was deleted: drop its soft state.
    fn forget_tenant(&self, tenant: TenantId);
}

/// The running leader services, present only while this replica leads and has started them.
#[derive(Default)]
pub struct LeaderSlot(RwLock<Option<Arc<dyn LeaderServices>>>);

impl LeaderSlot {
    pub fn set(&self, services: Option<Arc<dyn LeaderServices>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = services;
    }

    pub fn get(&self) -> Result<Arc<dyn LeaderServices>, ApiError> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|s| s.ready())
            .ok_or_else(|| ApiError::Unavailable("leader services are starting; retry".into()))
    }
}
