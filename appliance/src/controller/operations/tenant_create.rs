//! `POST /v1/tenant`: create a tenant, or answer an identical earlier create again.
//!
//! 1. Check the request: a tenant id (not a shard id), a positive stripe size.
//! 2. Choose the preferred AZ: an existing tenant keeps its own, so a retry is idempotent.
//! 3. Commit `CreateTenant` (the state machine answers 409 for another shard count), schedule
//!    it and wait up to 30 s for the reconciles, as upstream. A policy whose secondaries cannot
//!    all be placed answers 409 (the tenant stays; the background pass places them later).
//! 4. Answer the attached shards with their nodes and generations.

use std::time::Duration;

use state_machine::scheduler::Scheduler;
use state_machine::{Command, CreateTenant, Generation, PlacementPolicy};
use storcon_api::wire::{TenantCreateRequest, TenantCreateResponse, TenantCreateResponseShard};
use storcon_http::OperationError;

use super::Wait;
use crate::controller::{Controller, nodes};

/// Upstream waits this long for the reconciles a tenant change started.
const RECONCILE_WAIT: Duration = Duration::from_secs(30);

impl Controller {
    pub(super) async fn tenant_create(
        &self,
        req: TenantCreateRequest,
    ) -> Result<TenantCreateResponse, OperationError> {
        if req.new_tenant_id.shard_count.0 != 0 {
            return Err(OperationError::Invalid(format!(
                "new_tenant_id must be a tenant id, not the shard id {}",
                req.new_tenant_id
            )));
        }
        let tenant_id = req.new_tenant_id.tenant_id;
        let stripe_size = req.shard_parameters.stripe_size;
        if stripe_size == 0 {
            return Err(OperationError::Invalid(
                "stripe_size must be positive".into(),
            ));
        }
        let command = Command::CreateTenant(CreateTenant {
            tenant_id,
            shard_count: req.shard_parameters.count,
            stripe_size,
            placement: req.placement_policy.unwrap_or_default(),
            config: req.config.to_value(),
            preferred_az: self.preferred_az(tenant_id),
            generation: req.generation,
        });
        self.propose_and_reconcile(tenant_id, command, Wait::AtMost(RECONCILE_WAIT))
            .await?;
        self.check_secondaries_placed(tenant_id)?;
        let shards = self
            .state
            .read()
            .tenant_shards(tenant_id)
            .filter_map(|s| {
                s.intent.attached.map(|node_id| TenantCreateResponseShard {
                    shard_id: s.id,
                    node_id,
                    generation: s.generation.unwrap_or(Generation(0)),
                })
            })
            .collect();
        Ok(TenantCreateResponse { shards })
    }

    /// Upstream answers a create whose policy asks for more secondaries than can be placed with
    /// 409; the tenant stays, and the background pass places them when nodes allow.
    fn check_secondaries_placed(
        &self,
        tenant: state_machine::ids::TenantId,
    ) -> Result<(), OperationError> {
        let state = self.state.read();
        let short: Vec<_> = state
            .tenant_shards(tenant)
            .filter(|s| matches!(s.placement, PlacementPolicy::Attached(_)))
            .filter(|s| s.intent.secondaries.len() < s.placement.want_secondaries())
            .collect();
        match short.first() {
            Some(s) => Err(OperationError::Unschedulable {
                shard: s.id,
                reason: format!(
                    "only {} of {} secondaries could be placed",
                    s.intent.secondaries.len(),
                    s.placement.want_secondaries()
                ),
                count: short.len(),
            }),
            None => Ok(()),
        }
    }

    /// The AZ of an existing tenant, or the scheduler's choice for a new one.
    pub(super) fn preferred_az(&self, tenant: state_machine::ids::TenantId) -> Option<String> {
        let state = self.state.read();
        if let Some(shard) = state.tenant_shards(tenant).next() {
            return shard.preferred_az.clone();
        }
        let views = nodes::views(&state, &self.nodes.states());
        Scheduler::new(&state, views).choose_az()
    }
}
