//! `PUT /v1/tenant/:tenant_shard_id/location_config`: the control plane hands a tenant to the
//! controller (onboarding) or changes its placement, speaking the pageserver's own API.
//!
//! 1. Check: an unsharded id only (sharded tenants use the tenant APIs); an attached mode
//!    carries a generation.
//! 2. Map the mode to a policy: Detached -> Detached, Secondary -> Secondary, Attached* ->
//!    Attached(1), or Attached(0) while only one pageserver is registered. `tenant_conf` is
//!    required and typed (the HTTP layer refused anything else), so repeating a request is
//!    idempotent; it is stored as its canonical JSON object.
//! 3. One command: `CreateTenant` for an unknown tenant, else `OnboardTenant` (policy, config
//!    and the control plane's generation together, so a refused config leaves nothing behind).
//!    For an attached mode the request's generation becomes the tenant's, so the controller
//!    continues the control plane's generation sequence.
//! 4. Schedule, wait up to 5 s for the reconcile (a slow one is not an error), and answer the
//!    attached shards with the stripe size of a sharded tenant.

use std::time::Duration;

use state_machine::ids::TenantShardId;
use state_machine::{Command, CreateTenant, DEFAULT_STRIPE_SIZE, PlacementPolicy};
use storcon_api::wire::{
    LocationConfig, LocationConfigMode, LocationConfigResponse, LocationConfigResponseShard,
};
use storcon_http::OperationError;

use super::Wait;
use crate::controller::Controller;

const ONBOARD_RECONCILE_WAIT: Duration = Duration::from_secs(5);

impl Controller {
    pub(super) async fn location_config(
        &self,
        id: TenantShardId,
        conf: LocationConfig,
    ) -> Result<LocationConfigResponse, OperationError> {
        if id.shard_count.count() > 1 {
            return Err(OperationError::Invalid(format!(
                "{id}: location_config is only accepted for unsharded tenants; use the tenant APIs"
            )));
        }
        if conf.mode.is_attached() && conf.generation.is_none() {
            return Err(OperationError::Invalid(
                "an attached mode needs a generation".into(),
            ));
        }
        let tenant_id = id.tenant_id;
        let placement = match conf.mode {
            LocationConfigMode::Detached => PlacementPolicy::Detached,
            LocationConfigMode::Secondary => PlacementPolicy::Secondary,
            _ if self.state.read().nodes().count() > 1 => PlacementPolicy::Attached(1),
            _ => PlacementPolicy::Attached(0),
        };
        let config = conf.tenant_conf.to_value();
        let generation = conf.generation.filter(|_| conf.mode.is_attached());
        let known = self.state.read().tenant_shards(tenant_id).next().is_some();
        let command = if known {
            Command::OnboardTenant {
                tenant_id,
                placement,
                config,
                generation,
            }
        } else {
            Command::CreateTenant(CreateTenant {
                tenant_id,
                shard_count: id.shard_count.0,
                stripe_size: DEFAULT_STRIPE_SIZE,
                placement,
                config,
                preferred_az: self.preferred_az(tenant_id),
                generation,
            })
        };
        self.propose_and_reconcile(tenant_id, command, Wait::AtMost(ONBOARD_RECONCILE_WAIT))
            .await?;
        let state = self.state.read();
        let shards: Vec<_> = state.tenant_shards(tenant_id).collect();
        Ok(LocationConfigResponse {
            stripe_size: shards
                .first()
                .filter(|s| s.id.shard_count.count() > 1)
                .map(|s| s.stripe_size),
            shards: shards
                .iter()
                .filter_map(|s| {
                    s.intent
                        .attached
                        .map(|node_id| LocationConfigResponseShard {
                            shard_id: s.id,
                            node_id,
                        })
                })
                .collect(),
        })
    }
}
