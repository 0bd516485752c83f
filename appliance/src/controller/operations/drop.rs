//! Upstream's debug drops: forget a tenant or a node in the replicated state, calling no
//! pageserver and placing nothing.
//!
//! Tenant drop (`POST /debug/v1/tenant/:tenant_id/drop`):
//! 1. Hold the tenant's lock exclusively: no split, delete or timeline call of it interleaves.
//! 2. Commit `DropTenant` (404 for an unknown tenant): its shards and any split record go.
//! 3. Forget what this leader observed of its shards, so no reconcile plans a detach of them;
//!    wait (up to `PASS_WAIT`) for passes of its shards that were already running, forget again
//!    what they recorded, then drop the rest of its soft state (last errors, pending compute
//!    notifications, queued reconciles, its lock).
//!
//! The pageservers keep whatever they hold of the tenant. A pageserver that becomes Active
//! later (after a restart, or under a new leader) detaches it then, like any location the
//! controller does not know.
//!
//! Node drop (`POST /debug/v1/node/:node_id/drop`):
//! 1. Commit `DropNode` (404 unknown; 409 while a split names the node): the node record goes
//!    and no shard's intent or generation holder names it, in one command.
//! 2. Forget the node in this leader's soft state: availability, calls in flight (abandoned),
//!    its observed locations. Nothing is rescheduled here; shards that lost their attached node
//!    or a secondary are placed again by the next scheduling pass (the background pass, or
//!    `reconcile_all`). The node's pageserver keeps what it holds and is no longer called.
//!
//! Upstream tombstones the dropped node so its id cannot register again; storcon has no
//! tombstones, so the node may register again and comes back as a new, empty node.

use std::time::Duration;

use state_machine::ids::{TenantId, TenantShardId};
use state_machine::{Command, NodeId};
use storcon_http::OperationError;

use crate::controller::{Controller, lock};

/// How long a tenant drop waits for the passes of its shards that were already running.
const PASS_WAIT: Duration = Duration::from_secs(10);

impl Controller {
    pub(super) async fn tenant_drop(&self, tenant_id: TenantId) -> Result<(), OperationError> {
        let exclusive = self.locks.tenant_exclusive(tenant_id).await;
        let ids: Vec<TenantShardId> = self
            .state
            .read()
            .tenant_shards(tenant_id)
            .map(|s| s.id)
            .collect();
        self.propose_request(Command::DropTenant { tenant_id })
            .await?;
        lock(&self.observed).forget_tenant(tenant_id);
        let deadline = tokio::time::Instant::now() + PASS_WAIT;
        if self.wait_passes(ids, deadline).await.is_none() {
            tracing::warn!(%tenant_id, "dropped; a reconcile of it still runs");
        }
        lock(&self.observed).forget_tenant(tenant_id);
        self.hook.forget(tenant_id);
        self.reconciles.forget_tenant(tenant_id);
        drop(exclusive);
        self.locks.forget(tenant_id);
        tracing::info!(%tenant_id, "tenant dropped");
        Ok(())
    }

    pub(super) async fn node_drop(&self, node: NodeId) -> Result<(), OperationError> {
        self.propose_request(Command::DropNode { node_id: node })
            .await?;
        self.nodes.forget(node);
        lock(&self.observed).forget_node(node);
        tracing::info!(%node, "node dropped");
        Ok(())
    }
}
