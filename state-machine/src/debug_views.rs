//! Read-only views behind the debug routes, as pure functions of the state (and, for the shard
//! dump, of the leader's observations passed in): `GET /debug/v1/tenant/:id/locate`
//! ([`State::locate`]) and one element of `GET /debug/v1/tenant` ([`TenantShard::dump`]).
//! The scheduler's view is `Scheduler::dump`.

use storcon_api::wire::{
    IntentStateDump, ObservedStateDump, ObservedStateLocationDump, ShardIdentityDump,
    ShardParameters, SplitState, TenantLocateResponse, TenantLocateResponseShard, TenantShardDump,
};

use crate::ids::{TenantId, TenantShardId};
use crate::node::NodeId;
use crate::reconcile_plan::{Locations, ObservedLocation};
use crate::state::State;
use crate::tenant::TenantShard;

/// Upstream's only shard layout (`LAYOUT_V1`), which is the one storcon's shards use.
const SHARD_LAYOUT_V1: u8 = 1;

/// Why a tenant cannot be located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    #[error("Tenant {0} not found")]
    TenantNotFound(TenantId),
    /// Upstream's 400.
    #[error("Cannot locate a tenant that is not attached (shard {0} has no attached node)")]
    NotAttached(TenantShardId),
    /// The intent names a node that is not registered: `State::validate` rules this out.
    #[error("shard {shard} is attached to unregistered node {node}")]
    UnknownNode { shard: TenantShardId, node: NodeId },
}

impl State {
    /// Each shard of the tenant with the node its intent attaches it to, and that node's
    /// endpoints; refused if any shard has no attached node.
    pub fn locate(&self, tenant_id: TenantId) -> Result<TenantLocateResponse, LocateError> {
        let mut shards = Vec::new();
        let mut shard_params = None;
        for s in self.tenant_shards(tenant_id) {
            let node_id = s.intent.attached.ok_or(LocateError::NotAttached(s.id))?;
            let node = self.node(node_id).ok_or(LocateError::UnknownNode {
                shard: s.id,
                node: node_id,
            })?;
            shard_params.get_or_insert(ShardParameters {
                count: s.id.shard_count.0,
                stripe_size: s.stripe_size,
            });
            shards.push(TenantLocateResponseShard {
                shard_id: s.id,
                node_id,
                listen_pg_addr: node.listen_pg_addr.clone(),
                listen_pg_port: node.listen_pg_port,
                listen_grpc_addr: node.listen_grpc_addr.clone(),
                listen_grpc_port: node.listen_grpc_port,
                listen_http_addr: node.listen_http_addr.clone(),
                listen_http_port: node.listen_http_port,
                listen_https_port: node.listen_https_port,
            });
        }
        let shard_params = shard_params.ok_or(LocateError::TenantNotFound(tenant_id))?;
        Ok(TenantLocateResponse {
            shards,
            shard_params,
        })
    }
}

impl TenantShard {
    /// The shard as `GET /debug/v1/tenant` lists it: its record, with what the leader observed
    /// of it (`Unknown` -> `conf: null`), whether a compute notification is pending for its
    /// tenant, and its last error (`""` for none).
    pub fn dump(
        &self,
        observed: &Locations,
        pending_compute_notification: bool,
        last_error: String,
    ) -> TenantShardDump {
        let locations = observed
            .iter()
            .filter_map(|(node, l)| {
                let conf = match l {
                    ObservedLocation::Absent => return None,
                    ObservedLocation::Unknown => None,
                    ObservedLocation::Known(c) => Some(c.clone()),
                };
                Some((node, ObservedStateLocationDump { conf }))
            })
            .collect();
        TenantShardDump {
            tenant_shard_id: self.id,
            shard: ShardIdentityDump {
                number: self.id.shard_number,
                count: self.id.shard_count.0,
                stripe_size: self.stripe_size,
                layout: SHARD_LAYOUT_V1,
            },
            generation: self.generation,
            generation_pageserver: self.generation_pageserver,
            policy: self.placement,
            intent: IntentStateDump {
                attached: self.intent.attached,
                secondary: self.intent.secondaries.clone(),
                preferred_az_id: self.preferred_az.clone(),
            },
            observed: ObservedStateDump { locations },
            config: self.config.clone(),
            splitting: if self.splitting {
                SplitState::Splitting
            } else {
                SplitState::Idle
            },
            scheduling_policy: self.scheduling,
            pending_compute_notification,
            last_error,
        }
    }
}
