//! The state behind the debug routes: the two drops as commands (what they remove, in one
//! apply, and what they refuse), locate, the shard dump and the scheduler dump.

use std::collections::BTreeMap;

use state_machine::ids::{TenantId, TenantShardId};
use state_machine::reconcile_plan::{Locations, ObservedLocation};
use state_machine::scheduler::{NodeView, Scheduler};
use state_machine::{
    Command, CreateTenant, Generation, Intent, LocateError, Mutation, NodeId, NodeRegisterRequest,
    PlacementPolicy, Rejection, Response, State, Term,
};
use storcon_api::wire::{LocationConfigMode, MaySchedule, SplitState};

const TENANT: &str = "1f359dd625e519a1a4e8d7509690f6fc";
const OTHER: &str = "2f359dd625e519a1a4e8d7509690f6fc";

fn tenant(s: &str) -> TenantId {
    s.parse().expect("tenant id")
}

fn register(id: u64, az: &str) -> Command {
    Command::RegisterNode(NodeRegisterRequest {
        node_id: NodeId(id),
        listen_pg_addr: format!("pg{id}"),
        listen_pg_port: 5000 + id as u16,
        listen_grpc_addr: (id == 2).then(|| "grpc2".to_string()),
        listen_grpc_port: (id == 2).then_some(7002),
        listen_http_addr: format!("http{id}"),
        listen_http_port: 6000 + id as u16,
        listen_https_port: (id == 3).then_some(8003),
        availability_zone_id: az.into(),
        node_ip_addr: None,
    })
}

fn ok(state: &mut State, c: &Command) -> Vec<Mutation> {
    let (response, muts) = state.apply(c);
    assert!(
        !matches!(response, Response::Rejected(_)),
        "{c:?}: {response:?}"
    );
    muts
}

/// Three nodes; `TENANT` with 2 shards attached on node 1 (generation 1, secondary on 2) and
/// on node 2 (secondary on 1); `OTHER` unsharded, attached on node 3.
fn placed() -> State {
    let mut state = State::default();
    for (id, az) in [(1, "az-a"), (2, "az-a"), (3, "az-b")] {
        ok(&mut state, &register(id, az));
    }
    for (t, count) in [(TENANT, 2), (OTHER, 0)] {
        ok(
            &mut state,
            &Command::CreateTenant(CreateTenant {
                tenant_id: tenant(t),
                shard_count: count,
                stripe_size: 2048,
                placement: PlacementPolicy::Attached(1),
                config: serde_json::json!({"gc_period": "1h"}),
                preferred_az: Some("az-a".into()),
                generation: None,
            }),
        );
    }
    let ids: Vec<TenantShardId> = state.shards().map(|s| s.id).collect();
    let placements = [(1, vec![2]), (2, vec![1]), (3, vec![])];
    let mut intents = Vec::new();
    for (id, (attached, secondaries)) in ids.iter().zip(placements) {
        intents.push((
            *id,
            Intent {
                attached: Some(NodeId(attached)),
                secondaries: secondaries.into_iter().map(NodeId).collect(),
            },
        ));
    }
    ok(&mut state, &Command::SetIntents(intents.clone()));
    for (id, intent) in &intents {
        let node_id = intent.attached.expect("attached");
        ok(
            &mut state,
            &Command::IncrementGeneration {
                shard: *id,
                node_id,
            },
        );
    }
    state
}

fn shard(state: &State, n: usize) -> TenantShardId {
    state.shards().nth(n).expect("shard").id
}

#[test]
fn drop_tenant_forgets_every_shard_in_one_apply() {
    let mut state = placed();
    let before = state.clone();
    let muts = ok(
        &mut state,
        &Command::DropTenant {
            tenant_id: tenant(TENANT),
        },
    );
    assert_eq!(state.tenant_shards(tenant(TENANT)).count(), 0);
    assert_eq!(muts.len(), 2, "one row deleted per shard");
    assert!(muts.iter().all(|m| m.value.is_none()));
    // The other tenant and the nodes are untouched.
    assert_eq!(state.tenant_shards(tenant(OTHER)).count(), 1);
    assert_eq!(state.nodes().count(), before.nodes().count());
    assert_eq!(
        state.apply(&Command::DropTenant {
            tenant_id: tenant(TENANT)
        }),
        (
            Response::Rejected(Rejection::NotFound(format!("Tenant {TENANT} not found"))),
            vec![]
        )
    );
}

#[test]
fn drop_tenant_takes_a_split_in_flight_with_it() {
    let mut state = placed();
    ok(
        &mut state,
        &Command::RecordLeader {
            node_id: state_machine::ReplicaId(1),
            term: Term(3),
            address: "a".into(),
            started_at: "t".into(),
        },
    );
    ok(
        &mut state,
        &Command::BeginSplit {
            tenant_id: tenant(TENANT),
            new_shard_count: 4,
            new_stripe_size: None,
            term: Term(3),
        },
    );
    let muts = ok(
        &mut state,
        &Command::DropTenant {
            tenant_id: tenant(TENANT),
        },
    );
    assert!(state.split_record(tenant(TENANT)).is_none());
    assert!(muts.iter().any(|m| m.key.starts_with("split/")), "{muts:?}");
    assert_eq!(state.validate(), Ok(()));
    // The split's commit point finds nothing to complete.
    let (r, _) = state.apply(&Command::CompleteSplit {
        tenant_id: tenant(TENANT),
        term: Term(3),
    });
    assert!(
        matches!(r, Response::Rejected(Rejection::NotFound(_))),
        "{r:?}"
    );
}

#[test]
fn drop_node_dereferences_it_everywhere_in_one_apply() {
    let mut state = placed();
    let (first, second, other) = (shard(&state, 0), shard(&state, 1), shard(&state, 2));
    let muts = ok(&mut state, &Command::DropNode { node_id: NodeId(1) });
    assert!(state.node(NodeId(1)).is_none());
    // Shard 0 was attached on 1: no attached node now, nothing placed instead, its generation
    // kept but no longer held by anyone.
    let s = state.shard(&first).expect("shard 0");
    assert_eq!(
        s.intent,
        Intent {
            attached: None,
            secondaries: vec![NodeId(2)]
        }
    );
    assert_eq!(s.generation, Some(Generation(1)));
    assert_eq!(s.generation_pageserver, None);
    // Shard 1 had 1 as its secondary.
    let s = state.shard(&second).expect("shard 1");
    assert_eq!(
        s.intent,
        Intent {
            attached: Some(NodeId(2)),
            secondaries: vec![]
        }
    );
    assert_eq!(s.generation_pageserver, Some(NodeId(2)));
    // The shard elsewhere is not rewritten.
    assert_eq!(
        state.shard(&other).expect("other").intent.attached,
        Some(NodeId(3))
    );
    assert!(
        !state
            .shards()
            .any(|s| s.intent.contains(NodeId(1)) || s.generation_pageserver == Some(NodeId(1)))
    );
    let keys: Vec<&str> = muts.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys.len(), 3, "two shard rows and the node row: {keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("node/")));
    assert_eq!(state.validate(), Ok(()));
    // A generation can no longer be issued to it; an unknown node is NotFound.
    let (r, _) = state.apply(&Command::IncrementGeneration {
        shard: first,
        node_id: NodeId(1),
    });
    assert!(
        matches!(r, Response::Rejected(Rejection::NotFound(_))),
        "{r:?}"
    );
    assert_eq!(
        state.apply(&Command::DropNode { node_id: NodeId(1) }),
        (
            Response::Rejected(Rejection::NotFound("Node 1 not registered".into())),
            vec![]
        )
    );
    // No tombstone: the id may register again, as a new node.
    ok(&mut state, &register(1, "az-a"));
}

#[test]
fn drop_node_is_refused_while_a_split_names_it() {
    let mut state = placed();
    ok(
        &mut state,
        &Command::BeginSplit {
            tenant_id: tenant(TENANT),
            new_shard_count: 4,
            new_stripe_size: None,
            term: Term(1),
        },
    );
    let before = state.clone();
    let (r, muts) = state.apply(&Command::DropNode { node_id: NodeId(1) });
    assert!(
        matches!(r, Response::Rejected(Rejection::Conflict(_))),
        "{r:?}"
    );
    assert!(muts.is_empty());
    assert_eq!(state, before);
    // A node the split does not name may go.
    ok(&mut state, &Command::DropNode { node_id: NodeId(3) });
}

#[test]
fn locate_names_each_attached_node_and_its_endpoints() {
    let mut state = placed();
    let located = state.locate(tenant(TENANT)).expect("located");
    assert_eq!(located.shard_params.count, 2);
    assert_eq!(located.shard_params.stripe_size, 2048);
    let got: Vec<(TenantShardId, NodeId)> = located
        .shards
        .iter()
        .map(|s| (s.shard_id, s.node_id))
        .collect();
    assert_eq!(
        got,
        vec![(shard(&state, 0), NodeId(1)), (shard(&state, 1), NodeId(2))]
    );
    let on_2 = &located.shards[1];
    assert_eq!(on_2.listen_pg_addr, "pg2");
    assert_eq!(on_2.listen_pg_port, 5002);
    assert_eq!(on_2.listen_http_addr, "http2");
    assert_eq!(on_2.listen_http_port, 6002);
    assert_eq!(on_2.listen_grpc_addr.as_deref(), Some("grpc2"));
    assert_eq!(on_2.listen_grpc_port, Some(7002));
    assert_eq!(on_2.listen_https_port, None);
    let json = serde_json::to_value(&located).expect("json");
    assert_eq!(
        json["shard_params"],
        serde_json::json!({"count": 2, "stripe_size": 2048})
    );
    assert_eq!(
        json["shards"][0]["shard_id"],
        serde_json::json!(format!("{TENANT}-0002"))
    );

    assert_eq!(
        state.locate(tenant("3f359dd625e519a1a4e8d7509690f6fc")),
        Err(LocateError::TenantNotFound(tenant(
            "3f359dd625e519a1a4e8d7509690f6fc"
        )))
    );
    // A shard without an attached node makes the whole tenant unlocatable (upstream's 400).
    ok(&mut state, &Command::DropNode { node_id: NodeId(1) });
    assert_eq!(
        state.locate(tenant(TENANT)),
        Err(LocateError::NotAttached(shard(&state, 0)))
    );
}

#[test]
fn the_shard_dump_has_upstreams_names() {
    let state = placed();
    let s = state.shards().next().expect("shard");
    let attached = s.attached_location(Generation(1));
    let observed: Locations = [
        (NodeId(1), ObservedLocation::Known(attached.clone())),
        (NodeId(2), ObservedLocation::Unknown),
        (NodeId(3), ObservedLocation::Absent),
    ]
    .into_iter()
    .collect();
    let dump = s.dump(&observed, true, "boom".into());
    assert_eq!(dump.splitting, SplitState::Idle);
    assert_eq!(
        dump.observed.locations[&NodeId(1)]
            .conf
            .as_ref()
            .map(|c| c.mode),
        Some(LocationConfigMode::AttachedSingle)
    );
    let json = serde_json::to_value(&dump).expect("json");
    let expected = serde_json::json!({
        "tenant_shard_id": format!("{TENANT}-0002"),
        "shard": {"number": 0, "count": 2, "stripe_size": 2048, "layout": 1},
        "generation": 1,
        "generation_pageserver": 1,
        "policy": {"Attached": 1},
        "intent": {"attached": 1, "secondary": [2], "preferred_az_id": "az-a"},
        "observed": {"locations": {
            "1": {"conf": serde_json::to_value(&attached).expect("conf")},
            "2": {"conf": null},
        }},
        "config": {"gc_period": "1h"},
        "splitting": "Idle",
        "scheduling_policy": "Active",
        "pending_compute_notification": true,
        "last_error": "boom",
    });
    assert_eq!(json, expected);
    // And it decodes back (node ids as object keys).
    let back: storcon_api::wire::TenantShardDump = serde_json::from_value(json).expect("decode");
    assert_eq!(back, dump);
}

#[test]
fn the_scheduler_dump_counts_intents_per_node() {
    let state = placed();
    let views = [
        (1, "az-a", true, true),
        (2, "az-a", true, false),
        (3, "az-b", false, false),
    ]
    .into_iter()
    .map(|(id, az, available, may_schedule)| NodeView {
        id: NodeId(id),
        az: az.into(),
        available,
        may_schedule,
        utilization_score: 10 * id,
    });
    let dump = Scheduler::new(&state, views).dump();
    let counts: BTreeMap<u64, (usize, usize, usize, usize)> = dump
        .nodes
        .iter()
        .map(|(id, n)| {
            (
                id.0,
                (
                    n.shard_count,
                    n.attached_shard_count,
                    n.secondary_shard_count,
                    n.home_shard_count,
                ),
            )
        })
        .collect();
    // Node 1: shard 0 attached, shard 1 secondary, both at home (az-a). Node 3: OTHER attached,
    // away from its preferred az-a.
    assert_eq!(
        counts,
        BTreeMap::from([(1, (2, 1, 1, 2)), (2, (2, 1, 1, 2)), (3, (1, 1, 0, 0))])
    );
    let n1 = &dump.nodes[&NodeId(1)];
    assert_eq!(n1.az, "az-a");
    assert!(n1.available);
    let json = serde_json::to_value(&dump).expect("json");
    assert_eq!(
        json["nodes"]["1"]["may_schedule"],
        serde_json::json!({"Yes": {"utilization_score": 10}})
    );
    assert_eq!(json["nodes"]["2"]["may_schedule"], serde_json::json!("No"));
    assert_eq!(json["nodes"]["3"]["available"], serde_json::json!(false));
    assert!(matches!(
        dump.nodes[&NodeId(2)].may_schedule,
        MaySchedule::No
    ));
}
