//! Generation rules: only increase, issued to a node, bumped on re-attach.

use state_machine::ids::TenantShardId;
use state_machine::{
    Command, CreateTenant, Generation, NodeId, NodeRegisterRequest, PlacementPolicy, Response,
    State,
};

const TENANT: &str = "0123456789abcdef0123456789abcdef";

fn state_with_tenant(count: u8) -> State {
    let mut state = State::default();
    for id in [1, 2] {
        state.apply(&Command::RegisterNode(NodeRegisterRequest {
            node_id: NodeId(id),
            listen_pg_addr: "h".into(),
            listen_pg_port: id as u16,
            listen_grpc_addr: None,
            listen_grpc_port: None,
            listen_http_addr: "h".into(),
            listen_http_port: id as u16,
            listen_https_port: None,
            availability_zone_id: "az".into(),
            node_ip_addr: None,
        }));
    }
    state.apply(&Command::CreateTenant(CreateTenant {
        tenant_id: TENANT.parse().expect("id"),
        shard_count: count,
        stripe_size: 2048,
        placement: PlacementPolicy::Attached(1),
        config: serde_json::json!({}),
        preferred_az: None,
        generation: None,
    }));
    state
}

fn shard(n: u8, count: u8) -> TenantShardId {
    format!("{TENANT}-{n:02x}{count:02x}")
        .parse()
        .expect("shard id")
}

#[test]
fn increment_issues_next_generation_to_the_node() {
    let mut state = state_with_tenant(2);
    let s = shard(1, 2);
    assert_eq!(
        state.shard(&s).and_then(|s| s.generation),
        Some(Generation(0))
    );
    let (r, _) = state.apply(&Command::IncrementGeneration {
        shard: s,
        node_id: NodeId(2),
    });
    assert_eq!(r, Response::Generation(Generation(1)));
    let (r, _) = state.apply(&Command::IncrementGeneration {
        shard: s,
        node_id: NodeId(1),
    });
    assert_eq!(r, Response::Generation(Generation(2)));
    assert_eq!(
        state.shard(&s).and_then(|s| s.generation_pageserver),
        Some(NodeId(1))
    );
}

#[test]
fn re_attach_bumps_only_the_nodes_shards() {
    let mut state = state_with_tenant(4);
    for (n, node) in [(0, 1), (1, 2), (2, 1), (3, 2)] {
        state.apply(&Command::IncrementGeneration {
            shard: shard(n, 4),
            node_id: NodeId(node),
        });
    }
    let (r, muts) = state.apply(&Command::ReAttach { node_id: NodeId(1) });
    assert_eq!(
        r,
        Response::ReAttached(vec![
            (shard(0, 4), Generation(2)),
            (shard(2, 4), Generation(2))
        ])
    );
    assert_eq!(muts.len(), 2);
    assert_eq!(
        state.shard(&shard(1, 4)).and_then(|s| s.generation),
        Some(Generation(1))
    );
}

#[test]
fn unknown_shard_or_node_changes_nothing() {
    let mut state = state_with_tenant(1);
    let before = state.clone();
    let (r, muts) = state.apply(&Command::IncrementGeneration {
        shard: shard(0, 2),
        node_id: NodeId(1),
    });
    assert!(matches!(r, Response::Rejected(_)));
    assert!(muts.is_empty());
    // An unregistered node re-attaching gets an empty answer (upstream), and nothing changes.
    let (r, muts) = state.apply(&Command::ReAttach { node_id: NodeId(9) });
    assert_eq!(r, Response::ReAttached(vec![]));
    assert!(muts.is_empty());
    assert_eq!(state, before);
}

#[test]
fn create_is_idempotent_and_conflicts_on_other_count() {
    let mut state = state_with_tenant(4);
    let create = |count| {
        Command::CreateTenant(CreateTenant {
            tenant_id: TENANT.parse().expect("id"),
            shard_count: count,
            stripe_size: 2048,
            placement: PlacementPolicy::Attached(1),
            config: serde_json::json!({}),
            preferred_az: None,
            generation: None,
        })
    };
    assert_eq!(
        state.apply(&create(4)).0,
        Response::TenantCreated { created: false }
    );
    assert!(matches!(state.apply(&create(2)).0, Response::Rejected(_)));
    assert_eq!(state.shards().count(), 4);
}

#[test]
fn config_patch_sets_removes_and_keeps_fields() {
    let mut state = state_with_tenant(2);
    let tenant_id = TENANT.parse().expect("id");
    state.apply(&Command::SetTenantConfig {
        tenant_id,
        config: serde_json::json!({"gc_period": "1h", "pitr_interval": "7d"}),
    });
    let patch = serde_json::json!({"gc_period": null, "compaction_period": "20s"});
    let (r, muts) = state.apply(&Command::PatchTenantConfig {
        tenant_id,
        patch: patch.as_object().cloned().expect("object"),
    });
    assert_eq!(r, Response::Done);
    assert_eq!(muts.len(), 2, "every shard row rewritten");
    for s in state.tenant_shards(tenant_id) {
        assert_eq!(
            s.config,
            serde_json::json!({"pitr_interval": "7d", "compaction_period": "20s"})
        );
    }
}

#[test]
fn detached_tenants_get_no_generation_on_re_attach() {
    let mut state = state_with_tenant(1);
    let s = shard(0, 1);
    state.apply(&Command::IncrementGeneration {
        shard: s,
        node_id: NodeId(1),
    });
    state.apply(&Command::SetTenantPolicy {
        tenant_id: TENANT.parse().expect("id"),
        placement: Some(PlacementPolicy::Detached),
        scheduling: None,
    });
    let (r, _) = state.apply(&Command::ReAttach { node_id: NodeId(1) });
    assert_eq!(r, Response::ReAttached(vec![]));
    assert_eq!(state.shard(&s).and_then(|s| s.generation_pageserver), None);
    assert_eq!(
        state.shard(&s).and_then(|s| s.generation),
        Some(Generation(1))
    );
}

#[test]
fn generation_at_the_end_of_the_range_is_not_reused() {
    let mut state = State::default();
    state.apply(&Command::CreateTenant(CreateTenant {
        tenant_id: TENANT.parse().expect("id"),
        shard_count: 0,
        stripe_size: 2048,
        placement: PlacementPolicy::Attached(0),
        config: serde_json::json!({}),
        preferred_az: None,
        generation: Some(Generation(u32::MAX)),
    }));
    let s: TenantShardId = TENANT.parse().expect("id");
    let (r, muts) = state.apply(&Command::IncrementGeneration {
        shard: s,
        node_id: NodeId(1),
    });
    assert!(matches!(r, Response::Rejected(_)), "{r:?}");
    assert!(muts.is_empty());
}

#[test]
fn adopt_generation_only_fills_a_missing_one() {
    let mut state = State::default();
    let tenant_id = TENANT.parse().expect("id");
    state.apply(&Command::CreateTenant(CreateTenant {
        tenant_id,
        shard_count: 0,
        stripe_size: 2048,
        placement: PlacementPolicy::Secondary,
        config: serde_json::json!({}),
        preferred_az: None,
        generation: None,
    }));
    let s: TenantShardId = TENANT.parse().expect("id");
    state.apply(&Command::AdoptGeneration {
        tenant_id,
        generation: Generation(7),
    });
    assert_eq!(
        state.shard(&s).and_then(|s| s.generation),
        Some(Generation(7))
    );
    state.apply(&Command::AdoptGeneration {
        tenant_id,
        generation: Generation(3),
    });
    assert_eq!(
        state.shard(&s).and_then(|s| s.generation),
        Some(Generation(7))
    );
}
