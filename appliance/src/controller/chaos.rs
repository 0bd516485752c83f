//! The chaos injector (upstream's `--chaos-interval`), off unless `[controller]
//! chaos_interval_ms` is set: every interval one random shard that the optimiser could move
//! is migrated gracefully (prewarmed, then live) to a node in its preferred AZ, one of its
//! secondaries there if it has one (upstream #10438 keeps AZ locality). For soaking the
//! migration path in tests and staging; the optimiser may later move it back.

use std::collections::BTreeMap;
use std::sync::Arc;

use state_machine::ids::TenantShardId;
use state_machine::optimise::eligible;
use state_machine::scheduler::NodeView;
use state_machine::{NodeId, StartMigration, State};
use storcon_api::migrate::MigrationConfig;

use super::Controller;
use super::operations::Wait;

/// The shard to move and where, from the random number `r` (pure; no clock or randomness).
pub fn pick(state: &State, nodes: &[NodeView], r: u64) -> Option<(TenantShardId, NodeId, NodeId)> {
    let views: BTreeMap<NodeId, &NodeView> = nodes.iter().map(|n| (n.id, n)).collect();
    let shards: Vec<_> = state
        .shards()
        .filter(|s| eligible(state, s, &views))
        .collect();
    if shards.is_empty() {
        return None;
    }
    let shard = shards[(r % shards.len() as u64) as usize];
    let origin = shard.intent.attached?;
    let in_az = |n: &NodeId| {
        views.get(n).is_some_and(|v| {
            v.may_schedule && shard.preferred_az.as_deref().is_none_or(|az| v.az == az)
        })
    };
    let destination = match shard.intent.secondaries.iter().find(|n| in_az(n)) {
        Some(n) => *n,
        None => {
            let others: Vec<NodeId> = views
                .keys()
                .copied()
                .filter(|n| *n != origin && in_az(n))
                .collect();
            *others.get(((r >> 32) % others.len().max(1) as u64) as usize)?
        }
    };
    Some((shard.id, origin, destination))
}

impl Controller {
    pub(super) async fn chaos_move(self: &Arc<Self>, r: u64) {
        let picked = {
            let state = self.state.read();
            pick(&state, &self.node_views(), r)
        };
        let Some((shard, origin, destination)) = picked else {
            return;
        };
        let config = MigrationConfig::default();
        let start = StartMigration {
            shard,
            origin,
            destination,
            prewarm: true,
            warmup_timeout_ms: config.warmup_timeout().as_millis() as u64,
            download_request_timeout_ms: config.download_request_timeout().as_millis() as u64,
        };
        tracing::info!(%shard, %origin, %destination, "chaos: migrating");
        if let Err(e) = self.begin_migration(start, Wait::Queued).await {
            tracing::info!(%shard, error = %e, "chaos: migration not begun");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use state_machine::ids::ShardCount;
    use state_machine::{Command, CreateTenant, Intent, NodeRegisterRequest, PlacementPolicy};

    fn state() -> State {
        let mut state = State::default();
        for (id, az) in [(1, "a"), (2, "a"), (3, "b")] {
            state.apply(&Command::RegisterNode(NodeRegisterRequest {
                node_id: NodeId(id),
                listen_pg_addr: "h".into(),
                listen_pg_port: 1,
                listen_grpc_addr: None,
                listen_grpc_port: None,
                listen_http_addr: "h".into(),
                listen_http_port: 1,
                listen_https_port: None,
                availability_zone_id: az.into(),
                node_ip_addr: None,
            }));
        }
        let tenant = "00000000000000000000000000000001".parse().expect("id");
        state.apply(&Command::CreateTenant(CreateTenant {
            tenant_id: tenant,
            shard_count: 0,
            stripe_size: 2048,
            placement: PlacementPolicy::Attached(1),
            config: serde_json::json!({}),
            preferred_az: Some("a".into()),
            generation: None,
        }));
        let id = TenantShardId {
            tenant_id: tenant,
            shard_number: 0,
            shard_count: ShardCount(0),
        };
        state.apply(&Command::SetIntents(vec![(
            id,
            Intent {
                attached: Some(NodeId(1)),
                secondaries: vec![NodeId(3)],
            },
        )]));
        state
    }

    fn views(state: &State) -> Vec<NodeView> {
        state
            .nodes()
            .map(|n| NodeView {
                id: n.id,
                az: n.availability_zone_id.clone(),
                available: true,
                may_schedule: true,
                utilization_score: 0,
            })
            .collect()
    }

    #[test]
    fn moves_stay_in_the_preferred_az() {
        let state = state();
        for r in 0..64u64 {
            let (_, origin, destination) = pick(
                &state,
                &views(&state),
                r.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            )
            .expect("a move");
            assert_eq!(origin, NodeId(1));
            // The secondary is in the other AZ: node 2 is the only move inside AZ a.
            assert_eq!(destination, NodeId(2), "r={r}");
        }
        let mut no_az_b = views(&state);
        no_az_b[1].may_schedule = false;
        assert_eq!(pick(&state, &no_az_b, 7), None, "nowhere to go in AZ a");
    }
}
