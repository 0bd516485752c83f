//! Operator and test hooks under `/debug/v1`.
//!
//! - attach-hook: commit `AttachHook` (attach a shard, created if missing, to a node in a new
//!   generation, or detach it when `node_id` is null), then schedule and queue its reconcile.
//! - inspect: after a ReadIndex round, the latest generation of a shard and its node.
//! - consistency_check: replicated intents against registered nodes, the leader's observed view
//!   against the intents (for shards not being reconciled right now), and the in-memory state
//!   against the rows on disk.
//! - reconcile_all (upstream's `reconcile_all_now`):
//!   1. do what a background pass does: schedule every tenant (committing changed intents and
//!      queueing their shards), then queue every shard that needs a reconcile or whose last
//!      pass failed (also observed locations of shards the controller no longer knows);
//!   2. wait up to `RECONCILE_ALL_WAIT` for every pass requested or running by then;
//!   3. a pass that failed answers 500 naming its shard and error (upstream); otherwise, when
//!      nothing is pending any more, run an optimiser pass (upstream too); answer how many
//!      shards were waited for (at least how many were queued), plus the moves begun and the
//!      migrations still warming up. 0 means quiescent: a "call until 0" loop ends with every
//!      shard reconciled and the placement settled. Past the wait, the count is
//!      answered all the same (upstream answers 408) and the next call waits again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use state_machine::ids::TenantShardId;
use state_machine::{Command, Generation, Response};
use storcon_api::wire::{AttachHookRequest, AttachHookResponse, InspectRequest, InspectResponse};
use storcon_http::OperationError;

use super::Wait;
use crate::controller::{Controller, lock};

/// How long `reconcile_all` waits for the passes it started and those already running
/// (upstream's `RECONCILE_TIMEOUT`).
const RECONCILE_ALL_WAIT: Duration = Duration::from_secs(30);

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
            config: req.config.map(|c| c.to_value()),
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

    pub(super) async fn reconcile_all(self: &Arc<Self>) -> Result<usize, OperationError> {
        self.schedule_all().await?;
        let queued = self.reconcile_all_dirty();
        let waiting: Vec<TenantShardId> = {
            let mut ids: BTreeSet<TenantShardId> =
                self.state.read().shards().map(|s| s.id).collect();
            ids.extend(lock(&self.observed).shard_ids());
            ids.into_iter()
                .filter(|id| self.reconciles.is_running(id))
                .collect()
        };
        let deadline = tokio::time::Instant::now() + RECONCILE_ALL_WAIT;
        match self.wait_passes(waiting.iter().copied(), deadline).await {
            Some(true) => {}
            Some(false) => {
                if let Some(id) = waiting.iter().find(|id| self.reconciles.failed(id)) {
                    return Err(OperationError::Internal(format!(
                        "Reconcile error on shard {id}: {}",
                        self.reconciles.last_error(id)
                    )));
                }
            }
            None => tracing::info!(
                waiting = waiting.len(),
                "reconcile_all: passes still running after the wait"
            ),
        }
        // Quiescent: the optimiser's moves, and the migrations still warming up, count too,
        // so a "call until 0" loop also waits for the placement to settle.
        let optimised = self.optimise().await?;
        let migrating = self.state.read().migrations().count();
        tracing::info!(
            queued,
            waited = waiting.len(),
            optimised,
            migrating,
            "reconcile_all"
        );
        Ok(waiting.len().max(queued) + optimised + migrating)
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
