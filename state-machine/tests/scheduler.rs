//! Scheduling decisions for concrete situations (pure: state + node views in, intents out).

use state_machine::ids::TenantId;
use state_machine::scheduler::{NodeView, ScheduleError, Scheduler};
use state_machine::{
    Command, CreateTenant, Intent, NodeId, NodeRegisterRequest, PlacementPolicy, State, TenantShard,
};

fn node(id: NodeId, az: &str) -> NodeRegisterRequest {
    NodeRegisterRequest {
        node_id: id,
        listen_pg_addr: "h".into(),
        listen_pg_port: id.0 as u16,
        listen_grpc_addr: None,
        listen_grpc_port: None,
        listen_http_addr: "h".into(),
        listen_http_port: id.0 as u16,
        listen_https_port: None,
        availability_zone_id: az.into(),
        node_ip_addr: None,
    }
}

fn view(id: NodeId, az: &str, up: bool) -> NodeView {
    NodeView {
        id,
        az: az.into(),
        available: up,
        may_schedule: up,
        utilization_score: 0,
    }
}

const TENANT: &str = "1f359dd625e519a1a4e8d7509690f6fc";

fn setup(count: u8, placement: PlacementPolicy, az: Option<&str>) -> State {
    let mut state = State::default();
    for (id, az) in [
        (NodeId(1), "az-a"),
        (NodeId(2), "az-a"),
        (NodeId(3), "az-b"),
    ] {
        state.apply(&Command::RegisterNode(node(id, az)));
    }
    let (resp, _) = state.apply(&Command::CreateTenant(CreateTenant {
        tenant_id: TENANT.parse().expect("tenant id"),
        shard_count: count,
        stripe_size: 2048,
        placement,
        config: serde_json::json!({}),
        preferred_az: az.map(str::to_string),
        generation: None,
    }));
    assert!(matches!(
        resp,
        state_machine::Response::TenantCreated { created: true }
    ));
    state
}

fn tenant(state: &State) -> Vec<TenantShard> {
    let id: TenantId = TENANT.parse().expect("tenant id");
    state.tenant_shards(id).cloned().collect()
}

fn views(down: &[NodeId]) -> Vec<NodeView> {
    [
        (NodeId(1), "az-a"),
        (NodeId(2), "az-a"),
        (NodeId(3), "az-b"),
    ]
    .into_iter()
    .map(|(id, az)| view(id, az, !down.contains(&id)))
    .collect()
}

/// Schedules the tenant and commits the result, as the leader does.
fn schedule(state: &mut State, down: &[NodeId]) -> Vec<ScheduleError> {
    let mut scheduler = Scheduler::new(state, views(down));
    let (changed, errors) = scheduler.schedule_tenant(&tenant(state));
    state.apply(&Command::SetIntents(changed));
    errors.into_iter().map(|(_, e)| e).collect()
}

#[test]
fn attached_one_places_a_secondary_elsewhere_and_spreads_shards() {
    let mut state = setup(4, PlacementPolicy::Attached(1), Some("az-a"));
    assert!(schedule(&mut state, &[]).is_empty());
    let shards = tenant(&state);
    let mut attached_per_node = [0usize; 4];
    for s in &shards {
        let a = s.intent.attached.expect("attached");
        assert_eq!(s.intent.secondaries.len(), 1, "{:?}", s.intent);
        assert_ne!(s.intent.secondaries[0], a);
        attached_per_node[a.0 as usize] += 1;
    }
    // Four shards over three nodes: nobody holds more than two attachments.
    assert!(
        attached_per_node.iter().all(|c| *c <= 2),
        "{attached_per_node:?}"
    );
    // Attachments prefer the preferred AZ (nodes 1 and 2); secondaries prefer the other AZ.
    assert!(
        shards
            .iter()
            .all(|s| matches!(s.intent.attached, Some(NodeId(1 | 2))))
    );
    assert!(shards.iter().any(|s| s.intent.secondaries == [NodeId(3)]));
}

#[test]
fn rescheduling_a_placed_tenant_changes_nothing() {
    let mut state = setup(4, PlacementPolicy::Attached(1), Some("az-a"));
    schedule(&mut state, &[]);
    let mut scheduler = Scheduler::new(&state, views(&[]));
    let (changed, errors) = scheduler.schedule_tenant(&tenant(&state));
    assert!(changed.is_empty(), "{changed:?}");
    assert!(errors.is_empty());
}

#[test]
fn offline_attached_node_fails_over_to_its_secondary() {
    let mut state = setup(1, PlacementPolicy::Attached(1), Some("az-a"));
    schedule(&mut state, &[]);
    let before = tenant(&state)[0].intent.clone();
    let (old, secondary) = (before.attached.expect("a"), before.secondaries[0]);
    schedule(&mut state, &[old]);
    let after = tenant(&state)[0].intent.clone();
    assert_eq!(after.attached, Some(secondary));
    assert_eq!(after.secondaries, vec![old], "lost node kept as secondary");
}

#[test]
fn nothing_moves_when_no_node_could_take_over() {
    let mut state = setup(1, PlacementPolicy::Attached(0), None);
    schedule(&mut state, &[]);
    let before = tenant(&state)[0].intent.clone();
    schedule(&mut state, &[NodeId(1), NodeId(2), NodeId(3)]);
    assert_eq!(tenant(&state)[0].intent, before);
}

#[test]
fn paused_shards_keep_their_intent() {
    let mut state = setup(1, PlacementPolicy::Attached(0), None);
    let id: TenantId = TENANT.parse().expect("tenant id");
    state.apply(&Command::SetTenantPolicy {
        tenant_id: id,
        placement: None,
        scheduling: Some(state_machine::ShardSchedulingPolicy::Pause),
    });
    schedule(&mut state, &[]);
    assert_eq!(tenant(&state)[0].intent, Intent::default());
}

#[test]
fn secondary_and_detached_policies() {
    let mut state = setup(1, PlacementPolicy::Attached(1), Some("az-a"));
    schedule(&mut state, &[]);
    let id: TenantId = TENANT.parse().expect("tenant id");
    state.apply(&Command::SetTenantPolicy {
        tenant_id: id,
        placement: Some(PlacementPolicy::Secondary),
        scheduling: None,
    });
    schedule(&mut state, &[]);
    let intent = tenant(&state)[0].intent.clone();
    assert_eq!(intent.attached, None);
    assert_eq!(intent.secondaries.len(), 1);
    state.apply(&Command::SetTenantPolicy {
        tenant_id: id,
        placement: Some(PlacementPolicy::Detached),
        scheduling: None,
    });
    schedule(&mut state, &[]);
    assert_eq!(tenant(&state)[0].intent, Intent::default());
}

#[test]
fn no_nodes_is_an_error_not_a_panic() {
    let mut state = State::default();
    state.apply(&Command::CreateTenant(CreateTenant {
        tenant_id: TENANT.parse().expect("tenant id"),
        shard_count: 0,
        stripe_size: 2048,
        placement: PlacementPolicy::Attached(0),
        config: serde_json::json!({}),
        preferred_az: None,
        generation: None,
    }));
    let mut scheduler = Scheduler::new(&state, Vec::new());
    let (changed, errors) = scheduler.schedule_tenant(&tenant(&state));
    assert!(changed.is_empty());
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].1, ScheduleError::NoPageservers);
}

#[test]
fn new_tenant_az_is_the_least_loaded() {
    let mut state = setup(4, PlacementPolicy::Attached(0), Some("az-a"));
    schedule(&mut state, &[]);
    let scheduler = Scheduler::new(&state, views(&[]));
    assert_eq!(scheduler.choose_az().as_deref(), Some("az-b"));
}

#[test]
fn attached_zero_does_not_keep_the_lost_node_as_an_extra_secondary() {
    let mut state = setup(1, PlacementPolicy::Attached(0), None);
    schedule(&mut state, &[]);
    let old = tenant(&state)[0].intent.attached.expect("attached");
    schedule(&mut state, &[old]);
    let after = tenant(&state)[0].intent.clone();
    assert!(after.attached.is_some_and(|a| a != old), "{after:?}");
    assert!(after.secondaries.is_empty(), "{after:?}");
}
