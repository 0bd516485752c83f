//! Property tests: apply is deterministic, and the rows it emits rebuild the same state.

use std::collections::BTreeMap;

use proptest::prelude::*;
use state_machine::ids::{ShardCount, TenantId, TenantShardId};
use state_machine::{
    Command, CreateTenant, Generation, Intent, NodeId, NodeRegisterRequest, PlacementPolicy,
    ReplicaId, Response, State, Term,
};

fn tenant(t: u8) -> TenantId {
    TenantId([t; 16])
}

/// A pageserver id among the few the generated commands use.
fn node() -> impl Strategy<Value = NodeId> {
    (0u64..6).prop_map(NodeId)
}

fn tenant_commands() -> impl Strategy<Value = Command> {
    let create = (
        0u8..3,
        prop::sample::select(vec![0u8, 1, 2, 4]),
        prop::bool::ANY,
    )
        .prop_map(|(t, count, secondary)| {
            Command::CreateTenant(CreateTenant {
                tenant_id: tenant(t),
                shard_count: count,
                stripe_size: 2048,
                placement: if secondary {
                    PlacementPolicy::Secondary
                } else {
                    PlacementPolicy::Attached(1)
                },
                config: serde_json::json!({}),
                preferred_az: None,
                generation: None,
            })
        });
    let shard = (0u8..3, 0u8..4, prop::sample::select(vec![0u8, 1, 2, 4])).prop_map(|(t, n, c)| {
        TenantShardId {
            tenant_id: tenant(t),
            shard_number: n % c.max(1),
            shard_count: ShardCount(c),
        }
    });
    let increment = (shard.clone(), node())
        .prop_map(|(shard, node_id)| Command::IncrementGeneration { shard, node_id });
    let intents = (
        shard.clone(),
        prop::option::of(node()),
        prop::collection::vec(node(), 0..3),
    )
        .prop_map(|(id, attached, secondaries)| {
            Command::SetIntents(vec![(
                id,
                Intent {
                    attached,
                    secondaries,
                },
            )])
        });
    let reattach = node().prop_map(|node_id| Command::ReAttach { node_id });
    let delete = (0u8..3).prop_map(|t| Command::DeleteTenant {
        tenant_id: tenant(t),
    });
    let begin_split = (
        0u8..3,
        prop::sample::select(vec![1u8, 2, 4, 8]),
        (0u64..3).prop_map(Term),
    )
        .prop_map(|(t, new_shard_count, term)| Command::BeginSplit {
            tenant_id: tenant(t),
            new_shard_count,
            new_stripe_size: None,
            term,
        });
    let complete_split =
        (0u8..3, (0u64..3).prop_map(Term)).prop_map(|(t, term)| Command::CompleteSplit {
            tenant_id: tenant(t),
            term,
        });
    let abort_split = (0u8..3).prop_map(|t| Command::AbortSplit {
        tenant_id: tenant(t),
    });
    let attach_hook = (
        shard.clone(),
        prop::option::of(node()),
        prop::option::of((0u32..4).prop_map(Generation)),
    )
        .prop_map(
            |(shard, node_id, generation_override)| Command::AttachHook {
                shard,
                node_id,
                generation_override,
                config: None,
            },
        );
    let drop_tenant = (0u8..3).prop_map(|t| Command::DropTenant {
        tenant_id: tenant(t),
    });
    let drop_node = node().prop_map(|node_id| Command::DropNode { node_id });
    prop_oneof![
        2 => create,
        1 => attach_hook,
        1 => drop_tenant,
        1 => drop_node,
        3 => increment,
        2 => intents,
        1 => reattach,
        1 => delete,
        2 => begin_split,
        2 => complete_split,
        1 => abort_split,
    ]
}

/// A split that can be accepted: the tenant's shards attached (intent and generation on one
/// node), the leader recorded at the split's term, `BeginSplit`, then a `CompleteSplit` (of that
/// term, or sometimes another), an `AbortSplit`, or nothing. Single random commands alone almost
/// never line all of this up.
fn split_scenario() -> impl Strategy<Value = Vec<Command>> {
    (
        0u8..3,
        prop::sample::select(vec![0u8, 1, 2]),
        1u64..4,
        0u64..10,
        prop::sample::select(vec![2u8, 4, 8]),
        0u8..4,
    )
        .prop_map(|(t, count, node_id, term, factor, ending)| {
            let mut cmds = vec![
                register(NodeId(node_id)),
                Command::CreateTenant(CreateTenant {
                    tenant_id: tenant(t),
                    shard_count: count,
                    stripe_size: 2048,
                    placement: PlacementPolicy::Attached(0),
                    config: serde_json::json!({}),
                    preferred_az: None,
                    generation: None,
                }),
            ];
            for n in 0..ShardCount(count).count() {
                let shard = TenantShardId {
                    tenant_id: tenant(t),
                    shard_number: n,
                    shard_count: ShardCount(count),
                };
                cmds.push(Command::SetIntents(vec![(
                    shard,
                    Intent {
                        attached: Some(NodeId(node_id)),
                        secondaries: vec![],
                    },
                )]));
                cmds.push(Command::IncrementGeneration {
                    shard,
                    node_id: NodeId(node_id),
                });
            }
            cmds.push(leader_at(ReplicaId(node_id), Term(term)));
            cmds.push(Command::BeginSplit {
                tenant_id: tenant(t),
                new_shard_count: ShardCount(count).count() * factor,
                new_stripe_size: None,
                term: Term(term),
            });
            match ending {
                0 | 1 => cmds.push(Command::CompleteSplit {
                    tenant_id: tenant(t),
                    term: Term(term),
                }),
                2 => cmds.push(Command::AbortSplit {
                    tenant_id: tenant(t),
                }),
                _ => cmds.push(Command::CompleteSplit {
                    tenant_id: tenant(t),
                    term: Term(term + 1),
                }),
            }
            cmds
        })
}

fn register(id: NodeId) -> Command {
    Command::RegisterNode(NodeRegisterRequest {
        node_id: id,
        listen_pg_addr: format!("ps{id}"),
        listen_pg_port: 0,
        listen_grpc_addr: None,
        listen_grpc_port: None,
        listen_http_addr: format!("ps{id}"),
        listen_http_port: 0,
        listen_https_port: None,
        availability_zone_id: "az-a".to_string(),
        node_ip_addr: None,
    })
}

fn leader_at(node_id: ReplicaId, term: Term) -> Command {
    Command::RecordLeader {
        node_id,
        term,
        address: format!("http://127.0.0.1:{node_id}/"),
        started_at: format!("t{term}"),
    }
}

/// Sequences of random commands interleaved with split scenarios.
fn commands(max: usize) -> impl Strategy<Value = Vec<Command>> {
    prop::collection::vec(
        prop_oneof![
            6 => command().prop_map(|c| vec![c]),
            1 => split_scenario(),
        ],
        0..max,
    )
    .prop_map(|runs| runs.into_iter().flatten().collect())
}

fn command() -> impl Strategy<Value = Command> {
    let register = (
        node(),
        0u16..3,
        0u16..3,
        prop::option::of(0u16..2),
        prop::bool::ANY,
        prop::sample::select(vec!["az-a", "az-b"]),
    )
        .prop_map(|(id, http, pg, https, grpc, az)| {
            Command::RegisterNode(NodeRegisterRequest {
                node_id: id,
                listen_pg_addr: format!("ps{id}"),
                listen_pg_port: pg,
                listen_grpc_addr: grpc.then(|| format!("ps{id}")),
                listen_grpc_port: if grpc && http != 2 { Some(1) } else { None },
                listen_http_addr: format!("ps{id}"),
                listen_http_port: http,
                listen_https_port: https,
                availability_zone_id: az.to_string(),
                node_ip_addr: None,
            })
        });
    let leader = ((1u64..4).prop_map(ReplicaId), (0u64..10).prop_map(Term))
        .prop_map(|(node_id, term)| leader_at(node_id, term));
    prop_oneof![4 => register, 1 => leader, 6 => tenant_commands()]
}

proptest! {
    #[test]
    fn same_commands_same_state(cmds in commands(15)) {
        let mut a = State::default();
        let mut b = State::default();
        for c in &cmds {
            let ra = a.apply(c);
            let rb = b.apply(c);
            prop_assert_eq!(ra, rb);
        }
        prop_assert_eq!(a, b);
    }

    #[test]
    fn rows_rebuild_the_same_state(cmds in commands(15)) {
        let mut state = State::default();
        let mut table: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for c in &cmds {
            let (_, muts) = state.apply(c);
            for m in muts {
                match m.value {
                    Some(v) => { table.insert(m.key, v); }
                    None => { table.remove(&m.key); }
                }
            }
        }
        let rebuilt = State::from_rows(table.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .expect("rows decode");
        prop_assert_eq!(rebuilt, state);
    }
}

proptest! {
    /// Generations of a shard never go down while the shard exists, whatever commands arrive.
    #[test]
    fn generations_never_decrease(cmds in commands(20)) {
        let mut state = State::default();
        for c in &cmds {
            let before: BTreeMap<TenantShardId, Option<Generation>> =
                state.shards().map(|s| (s.id, s.generation)).collect();
            state.apply(c);
            for s in state.shards() {
                if let Some(old) = before.get(&s.id) {
                    prop_assert!(s.generation >= *old, "{:?}: {:?} -> {:?}", s.id, old, s.generation);
                }
                prop_assert!(s.intent.attached.is_none_or(|a| !s.intent.secondaries.contains(&a)));
            }
        }
    }
}

proptest! {
    /// Whatever the order of split commands, a tenant is at one shard count at every moment,
    /// and only a tenant with a split record has splitting shards.
    #[test]
    fn a_tenant_has_one_shard_count(cmds in commands(20)) {
        let mut state = State::default();
        for c in &cmds {
            state.apply(c);
            let mut counts: BTreeMap<TenantId, ShardCount> = BTreeMap::new();
            for s in state.shards() {
                let count = *counts.entry(s.id.tenant_id).or_insert(s.id.shard_count);
                prop_assert_eq!(count, s.id.shard_count, "{:?} after {:?}", s.id, c);
                let recorded = state.split_record(s.id.tenant_id).is_some();
                prop_assert_eq!(s.splitting, recorded, "{:?} after {:?}", s.id, c);
            }
        }
    }
}

proptest! {
    /// A copy of the state brought level by copying the rows a command changed equals the state
    /// that applied it (the store publishes batches this way).
    #[test]
    fn copying_changed_rows_equals_applying(cmds in commands(15)) {
        let mut state = State::default();
        let mut twin = State::default();
        for c in &cmds {
            let (_, muts) = state.apply(c);
            twin.copy_rows(&state, muts.iter().map(|m| m.key.as_str())).expect("known keys");
            prop_assert_eq!(&twin, &state, "after {:?}", c);
        }
    }
}

/// The property tests above reach the split commands they claim to cover: with a fixed seed,
/// generated sequences contain accepted `BeginSplit`, `CompleteSplit` and `AbortSplit` (and the
/// debug drops, `DropTenant` and `DropNode`), and the state's invariants hold after every step.
#[test]
fn the_generators_reach_accepted_splits() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    use state_machine::Response;

    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[8u8; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = commands(20);
    let (mut begun, mut completed, mut aborted) = (0, 0, 0);
    let (mut dropped_tenants, mut dropped_nodes) = (0, 0);
    for _ in 0..256 {
        let cmds = strategy
            .new_tree(&mut runner)
            .expect("a sequence")
            .current();
        let mut state = State::default();
        for c in &cmds {
            let (response, _) = state.apply(c);
            state.validate().expect("invariants hold");
            let accepted = !matches!(response, Response::Rejected(_));
            match c {
                Command::BeginSplit { .. } if accepted => begun += 1,
                Command::CompleteSplit { .. } if accepted => completed += 1,
                Command::AbortSplit { .. } if accepted => aborted += 1,
                Command::DropTenant { .. } if accepted => dropped_tenants += 1,
                Command::DropNode { .. } if accepted => dropped_nodes += 1,
                _ => {}
            }
        }
    }
    println!("accepted: {begun} BeginSplit, {completed} CompleteSplit, {aborted} AbortSplit");
    assert!(begun >= 50, "accepted BeginSplit {begun}");
    assert!(completed >= 20, "accepted CompleteSplit {completed}");
    assert!(aborted >= 5, "accepted AbortSplit {aborted}");
    println!("accepted: {dropped_tenants} DropTenant, {dropped_nodes} DropNode");
    assert!(
        dropped_tenants >= 5,
        "accepted DropTenant {dropped_tenants}"
    );
    assert!(dropped_nodes >= 5, "accepted DropNode {dropped_nodes}");
}

/// Applies `groups` as batch entries (a group of one as a plain entry, as the proposer does):
/// the answers, flattened, and the rows written.
fn apply_grouped(
    state: &mut State,
    groups: &[Vec<Command>],
) -> (Vec<Response>, BTreeMap<String, Vec<u8>>) {
    let mut answers = Vec::new();
    let mut table = BTreeMap::new();
    for g in groups {
        let (answer, muts) = match g.as_slice() {
            [one] => state.apply(one),
            many => state.apply(&Command::Batch(many.to_vec())),
        };
        match answer {
            Response::Batch(each) => {
                assert!(g.len() > 1, "a single command answered as a batch");
                answers.extend(each);
            }
            one => answers.push(one),
        }
        for m in muts {
            match m.value {
                Some(v) => {
                    table.insert(m.key, v);
                }
                None => {
                    table.remove(&m.key);
                }
            }
        }
    }
    (answers, table)
}

proptest! {
    /// Group commit changes nothing but the number of entries: commands cut into batches at
    /// random points get the answers, the state and the rows they get one entry each.
    #[test]
    fn a_batch_applies_like_its_commands_one_by_one(
        cmds in commands(15),
        cuts in prop::collection::vec(1usize..6, 1..20),
    ) {
        let mut groups = Vec::new();
        let mut rest = cmds.as_slice();
        for n in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (g, r) = rest.split_at((*n).min(rest.len()));
            groups.push(g.to_vec());
            rest = r;
        }
        let singles: Vec<Vec<Command>> = cmds.iter().map(|c| vec![c.clone()]).collect();
        let (mut batched, mut alone) = (State::default(), State::default());
        let (batched_answers, batched_rows) = apply_grouped(&mut batched, &groups);
        let (alone_answers, alone_rows) = apply_grouped(&mut alone, &singles);
        prop_assert_eq!(batched_answers, alone_answers);
        prop_assert_eq!(&batched, &alone);
        prop_assert_eq!(batched_rows, alone_rows);
    }
}

#[test]
fn a_batch_answers_each_command_and_refuses_only_the_bad_ones() {
    let mut state = State::default();
    let batch = Command::Batch(vec![
        register(NodeId(1)),
        // Refused (unknown node): changes nothing, and the commands around it still apply.
        Command::SetNodeScheduling {
            node_id: NodeId(9),
            policy: state_machine::NodeSchedulingPolicy::Pause,
        },
        Command::ReAttach { node_id: NodeId(1) },
        Command::Batch(vec![register(NodeId(2))]),
        register(NodeId(3)),
    ]);
    let (answer, muts) = state.apply(&batch);
    let Response::Batch(each) = answer else {
        panic!("not a batch answer: {answer:?}");
    };
    assert_eq!(each.len(), 5);
    assert!(
        matches!(each[0], Response::NodeRegistered(_)),
        "{:?}",
        each[0]
    );
    assert!(matches!(each[1], Response::Rejected(_)), "{:?}", each[1]);
    // Sees the node the first command registered.
    assert!(matches!(each[2], Response::ReAttached(_)), "{:?}", each[2]);
    assert!(
        matches!(each[3], Response::Rejected(_)),
        "a nested batch: {:?}",
        each[3]
    );
    assert!(
        matches!(each[4], Response::NodeRegistered(_)),
        "{:?}",
        each[4]
    );
    let nodes: Vec<NodeId> = state.nodes().map(|n| n.id).collect();
    assert_eq!(
        nodes,
        vec![NodeId(1), NodeId(3)],
        "the nested batch applied nothing"
    );
    assert_eq!(
        muts.iter().filter(|m| m.key.starts_with("node")).count(),
        2,
        "{muts:?}"
    );
    assert!(
        Command::Batch(vec![register(NodeId(4))])
            .check_admissible()
            .is_err(),
        "a batch is never proposed from outside"
    );
}
