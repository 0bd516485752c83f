//! The debug reads, each after a ReadIndex round so it reflects every acknowledged write:
//!
//! - tenants dump (`GET /debug/v1/tenant`): every shard's replicated record
//!   (`TenantShard::dump`) with this leader's observed locations of it, whether a compute
//!   notification is pending and its last error, in shard id order;
//! - locate (`GET /debug/v1/tenant/:id/locate`): `State::locate`; a shard without an attached
//!   node is upstream's 400, an unknown tenant 404;
//! - scheduler dump (`GET /debug/v1/scheduler`): the scheduler the next pass would build (the
//!   replicated intents, this leader's node views), per node (`Scheduler::dump`).

use state_machine::LocateError;
use state_machine::ids::TenantId;
use state_machine::scheduler::Scheduler;
use storcon_api::wire::{SchedulerDump, TenantLocateResponse, TenantShardDump};
use storcon_http::OperationError;

use crate::controller::{Controller, lock, nodes};

impl Controller {
    pub(super) async fn tenants_dump(&self) -> Result<Vec<TenantShardDump>, OperationError> {
        self.read_confirmed(|state| {
            state
                .shards()
                .map(|s| {
                    let observed = lock(&self.observed).locations(&s.id);
                    s.dump(
                        &observed,
                        self.hook.is_pending(s.id.tenant_id),
                        self.reconciles.last_error(&s.id),
                    )
                })
                .collect()
        })
        .await
    }

    pub(super) async fn tenant_locate(
        &self,
        tenant: TenantId,
    ) -> Result<TenantLocateResponse, OperationError> {
        self.read_confirmed(|state| state.locate(tenant))
            .await?
            .map_err(|e| match e {
                LocateError::TenantNotFound(t) => OperationError::TenantNotFound(t),
                LocateError::NotAttached(_) => OperationError::Invalid(e.to_string()),
                LocateError::UnknownNode { .. } => OperationError::Internal(e.to_string()),
            })
    }

    pub(super) async fn scheduler_dump(&self) -> Result<SchedulerDump, OperationError> {
        self.read_confirmed(|state| {
            let views = nodes::views(state, &self.nodes.states());
            Scheduler::new(state, views).dump()
        })
        .await
    }
}
