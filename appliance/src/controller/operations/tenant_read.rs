//! Reads of tenants, each after a ReadIndex round so it reflects every acknowledged write:
//! describe (`GET /control/v1/tenant/:id`), list (`GET /control/v1/tenant`, by tenant id,
//! paged by `start_after` and `limit`), config (`GET /v1/tenant/:id/config`). The replicated
//! record is joined with the leader's soft state per shard (reconciling, last error, pending
//! compute notification). A config is shown typed, as pageservers get it.

use std::collections::BTreeSet;

use state_machine::State;
use state_machine::ids::TenantId;
use storcon_api::wire::{
    TenantConfigResponse, TenantDescribeResponse, TenantDescribeResponseShard,
};
use storcon_http::{OperationError, TenantPage};

use crate::controller::Controller;

impl Controller {
    pub(super) async fn tenant_describe(
        &self,
        tenant: TenantId,
    ) -> Result<TenantDescribeResponse, OperationError> {
        self.read_confirmed(|s| self.describe_one(s, tenant))
            .await?
            .ok_or(OperationError::TenantNotFound(tenant))
    }

    pub(super) async fn tenant_list(
        &self,
        page: TenantPage,
    ) -> Result<Vec<TenantDescribeResponse>, OperationError> {
        self.read_confirmed(|s| {
            let ids: BTreeSet<TenantId> = s
                .shards()
                .map(|sh| sh.id.tenant_id)
                .filter(|t| page.start_after.is_none_or(|a| *t > a))
                .collect();
            ids.into_iter()
                .take(page.limit.unwrap_or(usize::MAX))
                .filter_map(|t| self.describe_one(s, t))
                .collect()
        })
        .await
    }

    pub(super) async fn tenant_config_get(
        &self,
        tenant: TenantId,
    ) -> Result<TenantConfigResponse, OperationError> {
        let config = self
            .read_confirmed(|s| {
                s.tenant_shards(tenant)
                    .next()
                    .map(|s| s.tenant_conf().to_value())
            })
            .await?
            .ok_or(OperationError::TenantNotFound(tenant))?;
        Ok(TenantConfigResponse {
            tenant_specific_overrides: config.clone(),
            effective_config: config,
        })
    }

    fn describe_one(&self, state: &State, tenant_id: TenantId) -> Option<TenantDescribeResponse> {
        let shards: Vec<_> = state.tenant_shards(tenant_id).collect();
        let first = shards.first()?;
        Some(TenantDescribeResponse {
            tenant_id,
            stripe_size: first.stripe_size,
            policy: first.placement,
            config: first.tenant_conf().to_value(),
            shards: shards
                .iter()
                .map(|s| TenantDescribeResponseShard {
                    tenant_shard_id: s.id,
                    node_attached: s.intent.attached,
                    node_secondary: s.intent.secondaries.clone(),
                    last_error: self.reconciles.last_error(&s.id),
                    is_reconciling: self.reconciles.is_running(&s.id),
                    is_pending_compute_notification: self.hook.is_pending(s.id.tenant_id),
                    is_splitting: s.splitting,
                    is_importing: false,
                    scheduling_policy: s.scheduling,
                    preferred_az_id: s.preferred_az.clone(),
                })
                .collect(),
        })
    }
}
