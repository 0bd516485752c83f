//! `DELETE /v1/tenant/:tenant_id`: deletes the tenant's data, then forgets it.
//!
//! 1. A delete of this tenant already running answers "in progress" (202) at once.
//! 2. Hold the tenant's lock exclusively: no split or timeline call interleaves. Unknown → 404.
//! 3. Commit scheduling policy `Stop`, so that no reconcile re-attaches what is being deleted,
//!    and wait for the reconcile passes already requested.
//! 4. Failpoint `tenant-delete-before-pageservers`.
//! 5. On every attached location, shard zero last: the pageserver's tenant delete (local and
//!    remote data), 202 until 404, for up to `DELETE_WAIT` in all; out of time, answer 202 and
//!    the client's retry continues from here (the pageserver's delete keeps running).
//! 6. Commit policy `Detached` (scheduling back to Active) and wait up to 30 s until no
//!    location is left on any pageserver: this detaches the secondaries. Else 503; a retry
//!    continues.
//! 7. What remote storage still holds (the data of earlier shard counts, left by splits; all of
//!    it for a tenant that was detached already): the delete of the unsharded id, which covers
//!    every shard of every count, on one available pageserver, 202 until 404, within what is
//!    left of `DELETE_WAIT` (upstream deletes this way only). No pageserver available → 503.
//! 8. Commit `DeleteTenant`, then drop the tenant's soft state (errors, pending compute
//!    notifications, queued reconciles, its lock).
//!
//! A leader that dies part-way leaves the tenant stored, in `Stop` or `Detached`; the client's
//! retry on the next leader repeats the steps, each of which is idempotent.

use std::time::Duration;

use state_machine::ids::{TenantId, TenantShardId};
use state_machine::{Command, PlacementPolicy, ShardSchedulingPolicy};
use storcon_http::{OperationError, TenantDeletion};

use super::Wait;
use super::timelines::{DELETE_WAIT, DeleteError, placed};
use crate::controller::Controller;

const DETACH_WAIT: Duration = Duration::from_secs(30);

impl Controller {
    pub(super) async fn tenant_delete(
        &self,
        tenant_id: TenantId,
    ) -> Result<TenantDeletion, OperationError> {
        let Some(_running) = self.locks.start_delete(tenant_id) else {
            return Ok(TenantDeletion::InProgress);
        };
        let _exclusive = self.locks.tenant_exclusive(tenant_id).await;
        if self.state.read().tenant_shards(tenant_id).next().is_none() {
            return Err(OperationError::TenantNotFound(tenant_id));
        }

        let stop = Command::SetTenantPolicy {
            tenant_id,
            placement: None,
            scheduling: Some(ShardSchedulingPolicy::Stop),
        };
        self.propose_and_reconcile(tenant_id, stop, Wait::AtMost(DETACH_WAIT))
            .await?;

        self.failpoints
            .hit("tenant-delete-before-pageservers")
            .await
            .map_err(|e| OperationError::Internal(e.to_string()))?;
        let attached = self.attachments(tenant_id);
        let deadline = tokio::time::Instant::now() + DELETE_WAIT;
        // Shard zero last: what routes to shard zero sees the tenant until it is gone.
        let (zero, others) = match attached.split_first() {
            Some((zero, others)) => (std::slice::from_ref(zero), others),
            None => (&[][..], &[][..]),
        };
        for group in [others, zero] {
            match self.delete_until_gone(&placed(group), "", deadline).await {
                Ok(()) => {}
                Err(DeleteError::StillRunning) => return Ok(TenantDeletion::InProgress),
                Err(DeleteError::Failed(e)) => return Err(e),
            }
        }

        let detach = Command::SetTenantPolicy {
            tenant_id,
            placement: Some(PlacementPolicy::Detached),
            scheduling: None,
        };
        let wait = Wait::Required {
            within: DETACH_WAIT,
            unfinished: format!(
                "tenant {tenant_id} is not detached everywhere yet; retry the delete"
            ),
        };
        self.propose_and_reconcile(tenant_id, detach, wait).await?;

        let everything = [(TenantShardId::unsharded(tenant_id), self.any_active_node()?)];
        match self.delete_until_gone(&everything, "", deadline).await {
            Ok(()) => {}
            Err(DeleteError::StillRunning) => return Ok(TenantDeletion::InProgress),
            Err(DeleteError::Failed(e)) => return Err(e),
        }
        self.propose_request(Command::DeleteTenant { tenant_id })
            .await?;
        self.forget_tenant(tenant_id);
        Ok(TenantDeletion::Done)
    }

    fn forget_tenant(&self, tenant: TenantId) {
        self.hook.forget(tenant);
        self.reconciles.forget_tenant(tenant);
        self.locks.forget(tenant);
    }
}
