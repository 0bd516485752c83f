//! Operator and test hooks under `/debug/v1`.
//!
//! - attach-hook: commit `AttachHook` (attach a shard, created if missing, to a node in a new
//!   generation, or detach it when `node_id` is null), then schedule and queue its reconcile.
//! - inspect: after a ReadIndex round, the latest generation of a shard and its node.
//! - consistency_check: replicated intents against registered nodes, the leader's observed view
//!   against the intents (for shards not being reconciled right now), and the in-memory state
//!   against the rows on disk.

use state_machine::ids::TenantShardId;
use state_machine::{Command, Generation, Response};
use storcon_api::wire::{AttachHookRequest, AttachHookResponse, InspectRequest, InspectResponse};
use storcon_http::OperationError;

use super::Wait;
use crate::controller::Controller;

impl Controller {
    pub(super) async fn attach_hook(
        &self,
        req: AttachHookRequest,
    ) -> Result<AttachHookResponse, OperationError> {
        let generation_override = req
            .generation_override
            .map(|g| {
                u32::try_from(g).map(Generation).map_err(|_| {
                    OperationError::Invalid(format!("generation_override {g} must not be negative"))
                })
            })
            .transpose()?;
        let command = Command::AttachHook {
            shard: req.tenant_shard_id,
            node_id: req.node_id,
            generation_override,
            config: req.config,
        };
        let answer = self
            .propose_and_reconcile(req.tenant_shard_id.tenant_id, command, Wait::Queued)
            .await?;
        let Response::AttachHook(generation) = answer else {
            return Err(OperationError::Internal(format!(
                "unexpected answer to AttachHook: {answer:?}"
            )));
        };
        Ok(AttachHookResponse { generation })
    }

    pub(super) async fn inspect(
        &self,
        req: InspectRequest,
    ) -> Result<InspectResponse, OperationError> {
        let attachment = self
            .read_confirmed(|s| {
                s.shard(&req.tenant_shard_id)
                    .and_then(|sh| sh.generation.zip(sh.generation_pageserver))
            })
            .await?;
        Ok(InspectResponse { attachment })
    }

    pub(super) async fn consistency_check(&self) -> Result<(), OperationError> {
        self.read_confirmed(|_| ()).await?;
        let mut problems = self.consistency_problems();
        match self.audit.memory_matches_disk().await {
            Ok(true) => {}
            Ok(false) => problems.push("in-memory state differs from the rows on disk".into()),
            Err(e) => problems.push(format!("cannot read the rows on disk: {e}")),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(OperationError::Inconsistent(problems))
        }
    }

    fn consistency_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let shard_ids: Vec<TenantShardId> = {
            let state = self.state.read();
            // The replicated state's own invariants (intents name registered nodes, ...).
            if let Err(violation) = state.validate() {
                problems.push(violation.to_string());
            }
            state.shards().map(|s| s.id).collect()
        };
        for id in shard_ids {
            if !self.reconciles.is_running(&id) && self.is_dirty(&id) {
                problems.push(format!(
                    "{id}: observed state differs from intent and no reconcile runs"
                ));
            }
        }
        problems
    }
}
