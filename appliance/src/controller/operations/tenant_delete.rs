//! `DELETE /v1/tenant/:tenant_id`.
//!
//! 1. Commit policy `Detached`, schedule, and wait up to 30 s until no location is left on any
//!    pageserver; if one is, answer 503 (the tenant stays, detached, and the delete may be
//!    retried).
//! 2. Commit `DeleteTenant` (404 for an unknown tenant).
//! 3. Drop the tenant's soft state: last errors, pending compute notifications, queued
//!    reconciles, its operation lock.

use std::time::Duration;

use state_machine::ids::TenantId;
use state_machine::{Command, PlacementPolicy};
use storcon_http::OperationError;

use super::Wait;
use crate::controller::Controller;

const DETACH_WAIT: Duration = Duration::from_secs(30);

impl Controller {
    pub(super) async fn tenant_delete(&self, tenant_id: TenantId) -> Result<(), OperationError> {
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
        self.propose_request(Command::DeleteTenant { tenant_id })
            .await?;
        self.forget_tenant(tenant_id);
        Ok(())
    }

    fn forget_tenant(&self, tenant: TenantId) {
        self.hook.forget(tenant);
        self.reconciles.forget_tenant(tenant);
        self.locks.forget(tenant);
    }
}
