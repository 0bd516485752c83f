//! The optimiser, pure: it converges on skewed clusters without visiting a placement twice,
//! repairs AZ violations, spreads a split tenant's children, and leaves a good placement alone.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use state_machine::ids::{ShardCount, TenantId, TenantShardId};
use state_machine::optimise::{Optimisation, plan};
use state_machine::scheduler::NodeView;
use state_machine::{
    Command, CreateTenant, Intent, NodeId, NodeRegisterRequest, PlacementPolicy, Response,
    StartMigration, State,
};

fn tenant(n: u32) -> TenantId {
    format!("{n:032x}").parse().expect("tenant id")
}

fn ok(state: &mut State, command: Command) {
    let (r, _) = state.apply(&command);
    assert!(!matches!(r, Response::Rejected(_)), "{command:?}: {r:?}");
}

fn register(state: &mut State, id: u64, az: &str) {
    ok(
        state,
        Command::RegisterNode(NodeRegisterRequest {
            node_id: NodeId(id),
            listen_pg_addr: "h".into(),
            listen_pg_port: id as u16,
            listen_grpc_addr: None,
            listen_grpc_port: None,
            listen_http_addr: "h".into(),
            listen_http_port: id as u16,
            listen_https_port: None,
            availability_zone_id: az.into(),
            node_ip_addr: None,
        }),
    );
}

/// Tenant `n` with `count` shards (0 = unsharded), each placed as `place(shard_number)` says.
fn add_tenant(
    state: &mut State,
    n: u32,
    count: u8,
    az: Option<&str>,
    place: impl Fn(u8) -> (u64, Vec<u64>),
) {
    ok(
        state,
        Command::CreateTenant(CreateTenant {
            tenant_id: tenant(n),
            shard_count: count,
            stripe_size: 2048,
            placement: PlacementPolicy::Attached(1),
            config: serde_json::json!({}),
            preferred_az: az.map(str::to_owned),
            generation: None,
        }),
    );
    let intents = (0..count.max(1))
        .map(|number| {
            let (attached, secondaries) = place(number);
            (
                TenantShardId {
                    tenant_id: tenant(n),
                    shard_number: number,
                    shard_count: ShardCount(count),
                },
                Intent {
                    attached: Some(NodeId(attached)),
                    secondaries: secondaries.into_iter().map(NodeId).collect(),
                },
            )
        })
        .collect();
    ok(state, Command::SetIntents(intents));
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

/// Carries a move out as the controller does: a prewarmed migration then its cut-over, or one
/// intent change.
fn execute(state: &mut State, o: &Optimisation) {
    match o {
        Optimisation::MigrateAttachment {
            shard,
            origin,
            destination,
        } => {
            ok(
                state,
                Command::StartMigration(StartMigration {
                    shard: *shard,
                    origin: *origin,
                    destination: *destination,
                    prewarm: true,
                    warmup_timeout_ms: 1000,
                    download_request_timeout_ms: 1000,
                }),
            );
            ok(
                state,
                Command::CutoverMigration {
                    shard: *shard,
                    destination: *destination,
                },
            );
        }
        Optimisation::ReplaceSecondary { shard, .. } => {
            let s = state.shard(shard).expect("shard").clone();
            ok(
                state,
                Command::SetIntents(vec![(*shard, o.intent_after(&s))]),
            );
        }
    }
}

type Placement = BTreeMap<TenantShardId, (Option<NodeId>, Vec<NodeId>)>;

fn placement(state: &State) -> Placement {
    state
        .shards()
        .map(|s| (s.id, (s.intent.attached, s.intent.secondaries.clone())))
        .collect()
}

/// Runs passes of at most `per_pass` moves until none is proposed; panics if a placement
/// repeats or it takes more than `max_passes`. Returns the moves made.
fn converge(state: &mut State, per_pass: usize, max_passes: usize) -> usize {
    let mut seen = BTreeSet::from([placement(state)]);
    let mut moves = 0;
    for _ in 0..max_passes {
        let planned = plan(state, &views(state), per_pass);
        assert!(planned.len() <= per_pass);
        if planned.is_empty() {
            state.validate().expect("valid after optimising");
            return moves;
        }
        let tenants: BTreeSet<TenantId> = planned.iter().map(|o| o.shard().tenant_id).collect();
        assert_eq!(tenants.len(), planned.len(), "one move per tenant per pass");
        for o in &planned {
            execute(state, o);
            moves += 1;
        }
        assert!(
            seen.insert(placement(state)),
            "a placement came back: oscillation"
        );
    }
    panic!("no convergence within {max_passes} passes");
}

fn attached_per_node(state: &State) -> BTreeMap<NodeId, usize> {
    let mut counts: BTreeMap<NodeId, usize> = state.nodes().map(|n| (n.id, 0)).collect();
    for s in state.shards() {
        if let Some(a) = s.intent.attached {
            *counts.entry(a).or_default() += 1;
        }
    }
    counts
}

fn spread(counts: &BTreeMap<NodeId, usize>) -> usize {
    let max = counts.values().max().copied().unwrap_or(0);
    let min = counts.values().min().copied().unwrap_or(0);
    max - min
}

#[test]
fn a_skewed_cluster_reaches_balance_without_oscillating() {
    let mut state = State::default();
    for id in 1..=4 {
        register(&mut state, id, "az-a");
    }
    // Twelve tenants and a four-shard one, all attached on node 1.
    for n in 0..12 {
        add_tenant(&mut state, n, 0, None, |_| (1, vec![2]));
    }
    add_tenant(&mut state, 100, 4, None, |_| (1, vec![2]));
    assert_eq!(spread(&attached_per_node(&state)), 16);
    let moves = converge(&mut state, 2, 200);
    let counts = attached_per_node(&state);
    assert!(spread(&counts) <= 1, "balanced: {counts:?}");
    // 16 attachments on 4 nodes: at least 12 had to leave node 1.
    assert!(moves >= 12, "{moves} moves");
    let children: BTreeSet<NodeId> = state
        .tenant_shards(tenant(100))
        .filter_map(|s| s.intent.attached)
        .collect();
    assert_eq!(children.len(), 4, "the four shards are on four nodes");
    for s in state.shards() {
        assert_eq!(s.intent.secondaries.len(), 1, "{}: {:?}", s.id, s.intent);
    }
}

#[test]
fn split_children_spread_over_the_az_and_stay_in_it() {
    let mut state = State::default();
    for id in 1..=3 {
        register(&mut state, id, "az-a");
    }
    for id in 4..=5 {
        register(&mut state, id, "az-b");
    }
    // The children of a split stay on their parent's node, secondaries on one other node.
    add_tenant(&mut state, 7, 4, Some("az-a"), |_| (1, vec![4]));
    converge(&mut state, 16, 50);
    let mut per_node: BTreeMap<NodeId, usize> = BTreeMap::new();
    for s in state.tenant_shards(tenant(7)) {
        let a = s.intent.attached.expect("attached");
        assert!(
            a.0 <= 3,
            "{}: attached outside the preferred AZ on {a}",
            s.id
        );
        *per_node.entry(a).or_default() += 1;
        for sec in &s.intent.secondaries {
            assert!(
                sec.0 >= 4,
                "{}: secondary in the preferred AZ on {sec}",
                s.id
            );
        }
    }
    assert_eq!(
        per_node.len(),
        3,
        "spread over the AZ's three nodes: {per_node:?}"
    );
    assert!(
        per_node.values().all(|c| (1..=2).contains(c)),
        "{per_node:?}"
    );
}

#[test]
fn attachments_outside_the_preferred_az_come_home() {
    let mut state = State::default();
    register(&mut state, 1, "az-a");
    register(&mut state, 2, "az-b");
    // After a failover: attached in az-b, the secondary in az-a.
    for n in 0..3 {
        add_tenant(&mut state, n, 0, Some("az-a"), |_| (2, vec![1]));
    }
    let planned = plan(&state, &views(&state), 10);
    assert_eq!(planned.len(), 3);
    for o in &planned {
        assert!(
            matches!(o, Optimisation::MigrateAttachment { origin, destination, .. }
                if *origin == NodeId(2) && *destination == NodeId(1)),
            "{o:?}"
        );
    }
    converge(&mut state, 10, 10);
    for s in state.shards() {
        assert_eq!(s.intent.attached, Some(NodeId(1)));
        assert_eq!(s.intent.secondaries, vec![NodeId(2)]);
    }
}

#[test]
fn a_good_placement_and_ineligible_shards_are_left_alone() {
    let mut state = State::default();
    for id in 1..=2 {
        register(&mut state, id, "az-a");
    }
    add_tenant(&mut state, 1, 0, None, |_| (1, vec![2]));
    add_tenant(&mut state, 2, 0, None, |_| (2, vec![1]));
    assert!(plan(&state, &views(&state), 10).is_empty());
    // Skewed, but the shards may not be optimised: paused scheduling, or nodes that take no
    // work.
    add_tenant(&mut state, 3, 0, None, |_| (1, vec![2]));
    add_tenant(&mut state, 4, 0, None, |_| (1, vec![2]));
    assert_eq!(plan(&state, &views(&state), 10).len(), 1);
    ok(
        &mut state,
        Command::SetTenantPolicy {
            tenant_id: tenant(3),
            placement: None,
            scheduling: Some(state_machine::ShardSchedulingPolicy::Essential),
        },
    );
    ok(
        &mut state,
        Command::SetTenantPolicy {
            tenant_id: tenant(4),
            placement: None,
            scheduling: Some(state_machine::ShardSchedulingPolicy::Pause),
        },
    );
    // Only tenant 1's shard may balance the nodes now.
    let planned = plan(&state, &views(&state), 10);
    assert_eq!(planned.len(), 1, "{planned:?}");
    assert_eq!(planned[0].shard().tenant_id, tenant(1));
    let mut no_work = views(&state);
    no_work[1].may_schedule = false;
    assert!(
        plan(&state, &no_work, 10).is_empty(),
        "node 2 takes no work"
    );
    assert!(plan(&state, &views(&state), 0).is_empty(), "max 0");
}

/// A tenant: shard count, preferred AZ (index), (attached, secondary) node indexes per shard.
type TenantPlan = (u8, Option<u8>, Vec<(u8, u8)>);

fn cluster() -> impl Strategy<Value = (Vec<&'static str>, Vec<TenantPlan>)> {
    let nodes = prop::collection::vec(prop::sample::select(vec!["az-a", "az-b"]), 2..6);
    nodes.prop_flat_map(|azs| {
        let n = azs.len() as u8;
        let shard = (0..n, 0..n);
        let tenant = (
            prop::sample::select(vec![0u8, 2, 4]),
            prop::option::of(0..2u8),
            prop::collection::vec(shard, 4),
        );
        (Just(azs), prop::collection::vec(tenant, 1..10))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any placement converges without a repeat, and the fixpoint has no attachment outside
    /// its preferred AZ while a node of that AZ takes work.
    #[test]
    fn any_placement_converges((azs, tenants) in cluster(), per_pass in 1usize..5) {
        let mut state = State::default();
        for (i, az) in azs.iter().enumerate() {
            register(&mut state, i as u64 + 1, az);
        }
        let n = azs.len() as u8;
        let mut violations_before = 0;
        for (t, (count, az, places)) in tenants.iter().enumerate() {
            let az = az.map(|i| ["az-a", "az-b"][i as usize]);
            add_tenant(&mut state, t as u32, *count, az, |number| {
                let (a, s) = places[number as usize % places.len()];
                let s = if s == a { (s + 1) % n } else { s };
                (a as u64 + 1, vec![s as u64 + 1])
            });
            if let Some(az) = az {
                let has_az = azs.contains(&az);
                violations_before += state
                    .tenant_shards(tenant(t as u32))
                    .filter(|s| has_az && state.node(s.intent.attached.expect("a")).expect("n").availability_zone_id != az)
                    .count();
            }
        }
        let moves = converge(&mut state, per_pass, 500);
        prop_assert!(violations_before == 0 || moves > 0);
        for s in state.shards() {
            let a = s.intent.attached.expect("attached");
            if let Some(az) = &s.preferred_az && azs.contains(&az.as_str()) {
                prop_assert_eq!(&state.node(a).expect("node").availability_zone_id, az);
            }
        }
    }
}

#[test]
fn draining_the_destination_ends_a_warm_up_and_its_secondary() {
    let mut state = State::default();
    for id in 1..=3 {
        register(&mut state, id, "az-a");
    }
    add_tenant(&mut state, 1, 0, None, |_| (1, vec![2]));
    let shard = state.shards().next().expect("shard").id;
    let start = StartMigration {
        shard,
        origin: NodeId(1),
        destination: NodeId(3),
        prewarm: true,
        warmup_timeout_ms: 1000,
        download_request_timeout_ms: 1000,
    };
    ok(&mut state, Command::StartMigration(start.clone()));
    assert!(state.migration(&shard).is_some());
    assert_eq!(
        state.shard(&shard).expect("shard").intent.secondaries,
        vec![NodeId(2), NodeId(3)]
    );
    ok(
        &mut state,
        Command::StartNodeOperation(state_machine::node_operation::NodeOperation {
            node: NodeId(3),
            kind: state_machine::node_operation::NodeOperationKind::Drain,
            force: false,
        }),
    );
    assert!(state.migration(&shard).is_none(), "ended by the drain");
    assert_eq!(
        state.shard(&shard).expect("shard").intent.secondaries,
        vec![NodeId(2)],
        "the warm-up's secondary went with it"
    );
    state.validate().expect("valid");
    let (r, _) = state.apply(&Command::StartMigration(start));
    assert!(
        matches!(
            r,
            Response::Rejected(state_machine::Rejection::PreconditionFailed(_))
        ),
        "no warm-up towards a draining node: {r:?}"
    );
}
