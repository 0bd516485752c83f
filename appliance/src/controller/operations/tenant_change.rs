//! Changes to a tenant that keep its shards: placement and scheduling policy, config.
//!
//! - policy (`PUT /control/v1/tenant/:id/policy`): commit `SetTenantPolicy`, schedule, answer
//!   once the reconciles are queued;
//! - config (`PUT`/`PATCH /v1/tenant/config`): commit `SetTenantConfig`/`PatchTenantConfig`
//!   with the typed config's (or patch's) canonical JSON object, schedule, wait up to 5 s for
//!   pageservers to have it (a slow one is not an error, as upstream).

use std::time::Duration;

use state_machine::Command;
use state_machine::ids::TenantId;
use storcon_api::wire::{TenantConfigPatchRequest, TenantConfigRequest, TenantPolicyRequest};
use storcon_http::OperationError;

use super::Wait;
use crate::controller::Controller;

const CONFIG_RECONCILE_WAIT: Duration = Duration::from_secs(5);

impl Controller {
    pub(super) async fn tenant_policy(
        &self,
        tenant_id: TenantId,
        req: TenantPolicyRequest,
    ) -> Result<(), OperationError> {
        let command = Command::SetTenantPolicy {
            tenant_id,
            placement: req.placement,
            scheduling: req.scheduling,
        };
        self.propose_and_reconcile(tenant_id, command, Wait::Queued)
            .await?;
        Ok(())
    }

    pub(super) async fn tenant_config_set(
        &self,
        req: TenantConfigRequest,
    ) -> Result<(), OperationError> {
        let command = Command::SetTenantConfig {
            tenant_id: req.tenant_id,
            config: req.config.to_value(),
        };
        self.propose_and_reconcile(req.tenant_id, command, Wait::AtMost(CONFIG_RECONCILE_WAIT))
            .await?;
        Ok(())
    }

    pub(super) async fn tenant_config_patch(
        &self,
        req: TenantConfigPatchRequest,
    ) -> Result<(), OperationError> {
        let command = Command::PatchTenantConfig {
            tenant_id: req.tenant_id,
            patch: req.config.to_map(),
        };
        self.propose_and_reconcile(req.tenant_id, command, Wait::AtMost(CONFIG_RECONCILE_WAIT))
            .await?;
        Ok(())
    }
}
