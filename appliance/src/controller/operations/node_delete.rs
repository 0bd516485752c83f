//! Node deletion (upstream section 5.11), run by `node_operation.rs`:
//! `PUT /control/v1/node/:id/delete[?force=true]`, cancelled by `DELETE` of the same path.
//!
//! 1. Every shard with the node in its intent, scheduling Active, in id order:
//!    - attached there: moved live to its secondary, or where `drain_fallback` says (without
//!      `force`); a shard that has nowhere to go stops the delete (it stays recorded, the
//!      operator cancels or adds a node);
//!    - a secondary there: the node leaves its intent, and the scheduler places another.
//!
//!    Before each, the delete must still be recorded. With `force` nothing is moved first:
//!    step 2 drops every reference and the scheduler places the shards afresh (cold).
//! 2. Commit `DeleteNode`: the node and every reference to it go, its id is tombstoned, the
//!    record ends. Then every tenant that referenced it is scheduled and reconciled, and the
//!    leader forgets the node (no more heartbeats or calls).
//!
//! The legacy `DELETE /control/v1/node/:id` is step 2 alone, at once (200, also for an unknown
//! node, as upstream).

use std::collections::BTreeSet;

use state_machine::ids::TenantId;
use state_machine::node_operation::{NodeOperation, drain_fallback};
use state_machine::{Command, Intent, NodeId};
use storcon_http::OperationError;

use super::Wait;
use crate::controller::{Controller, lock};

impl Controller {
    /// Moves everything off the node; `true` when nothing is left on it by intent.
    pub(super) async fn delete_node_off(
        &self,
        operation: NodeOperation,
    ) -> Result<bool, OperationError> {
        if operation.force {
            return Ok(true);
        }
        let node = operation.node;
        // A moved attachment may leave the node as the shard's secondary (the origin stays one
        // when the policy wants it): later passes take those off too.
        for _pass in 0..3 {
            let shards: Vec<_> = self
                .state
                .read()
                .shards()
                .filter(|s| s.intent.contains(node))
                .filter(|s| s.scheduling == state_machine::ShardSchedulingPolicy::Active)
                .map(|s| s.id)
                .collect();
            if shards.is_empty() {
                break;
            }
            for id in shards {
                if !self.still_running(operation) {
                    return Ok(false);
                }
                self.take_off(id, node).await?;
            }
        }
        Ok(self.still_running(operation))
    }

    /// One shard off the node: its attachment moved live, or the node out of its secondaries.
    async fn take_off(
        &self,
        id: state_machine::ids::TenantShardId,
        node: NodeId,
    ) -> Result<(), OperationError> {
        let Some(shard) = self.state.read().shard(&id).cloned() else {
            return Ok(());
        };
        if shard.intent.attached == Some(node) {
            let views = self.node_views();
            let may: BTreeSet<NodeId> = views
                .iter()
                .filter(|v| v.may_schedule)
                .map(|v| v.id)
                .collect();
            let to = shard
                .intent
                .secondaries
                .iter()
                .copied()
                .find(|n| may.contains(n))
                .or_else(|| drain_fallback(&self.state.read(), &shard, node, &views))
                .ok_or_else(|| {
                    OperationError::PreconditionFailed(format!(
                        "{id} has nowhere to go from node {node}"
                    ))
                })?;
            self.move_attachment(id, node, to).await?;
        } else {
            let intent = Intent {
                attached: shard.intent.attached,
                secondaries: shard
                    .intent
                    .secondaries
                    .iter()
                    .copied()
                    .filter(|n| *n != node)
                    .collect(),
            };
            self.propose_and_reconcile(
                id.tenant_id,
                Command::SetIntents(vec![(id, intent)]),
                Wait::AtMost(std::time::Duration::from_secs(60)),
            )
            .await?;
        }
        Ok(())
    }

    /// Deletes the node and tombstones its id, then places what referenced it.
    pub(super) async fn remove_node(&self, node: NodeId) -> Result<(), OperationError> {
        let tenants: BTreeSet<TenantId> = self
            .state
            .read()
            .shards()
            .filter(|s| s.intent.contains(node) || s.generation_pageserver == Some(node))
            .map(|s| s.id.tenant_id)
            .collect();
        self.propose_request(Command::DeleteNode { node_id: node })
            .await?;
        tracing::info!(%node, "node deleted");
        self.nodes.forget(node);
        lock(&self.observed).forget_node(node);
        for tenant in tenants {
            if let Err(e) = self.schedule_and_queue(tenant).await {
                tracing::warn!(%tenant, error = %e, "placing a deleted node's shards");
            }
        }
        Ok(())
    }

    /// `DELETE /control/v1/node/:id`: the deprecated synchronous delete.
    pub(super) async fn node_delete_now(&self, node: NodeId) -> Result<(), OperationError> {
        if self.state.read().node(node).is_none() {
            return Ok(());
        }
        self.remove_node(node).await
    }

    pub(super) async fn tombstone_delete(&self, node: NodeId) -> Result<(), OperationError> {
        self.propose_request(Command::DeleteTombstone { node_id: node })
            .await?;
        Ok(())
    }
}
