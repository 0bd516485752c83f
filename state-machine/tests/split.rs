//! Split commands: upstream's validation answers, the commit point, abort, and the term fence.

use state_machine::ids::{TenantId, TenantShardId};
use state_machine::{
    Command, CreateTenant, Generation, Intent, NodeId, NodeRegisterRequest, PlacementPolicy,
    Rejection, ReplicaId, Response, SplitPlan, State, Term,
};

const TENANT: &str = "0123456789abcdef0123456789abcdef";

fn tenant() -> TenantId {
    TENANT.parse().expect("tenant id")
}

fn shard(n: u8, count: u8) -> TenantShardId {
    format!("{TENANT}-{n:02x}{count:02x}")
        .parse()
        .expect("shard id")
}

fn ok(state: &mut State, command: Command) -> Response {
    let (r, _) = state.apply(&command);
    assert!(!matches!(r, Response::Rejected(_)), "{command:?}: {r:?}");
    r
}

fn rejected(state: &mut State, command: Command) -> Rejection {
    let before = state.clone();
    let (r, muts) = state.apply(&command);
    assert!(muts.is_empty());
    assert_eq!(*state, before, "a rejected command changed the state");
    match r {
        Response::Rejected(r) => r,
        other => panic!("{command:?} was not rejected: {other:?}"),
    }
}

/// Two nodes; a tenant of `count` shards, each attached on node 1 + n % 2 with a secondary on
/// the other node, generation issued.
fn attached_tenant(count: u8) -> State {
    let mut state = State::default();
    for id in [1u64, 2] {
        ok(
            &mut state,
            Command::RegisterNode(NodeRegisterRequest {
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
            }),
        );
    }
    ok(
        &mut state,
        Command::CreateTenant(CreateTenant {
            tenant_id: tenant(),
            shard_count: count,
            stripe_size: 2048,
            placement: PlacementPolicy::Attached(1),
            config: serde_json::json!({"gc_period": "1h"}),
            preferred_az: Some("az".into()),
            generation: None,
        }),
    );
    let ids: Vec<TenantShardId> = state.tenant_shards(tenant()).map(|s| s.id).collect();
    for id in ids {
        let node = 1 + u64::from(id.shard_number % 2);
        ok(
            &mut state,
            Command::SetIntents(vec![(
                id,
                Intent {
                    attached: Some(NodeId(node)),
                    secondaries: vec![NodeId(3 - node)],
                },
            )]),
        );
        ok(
            &mut state,
            Command::IncrementGeneration {
                shard: id,
                node_id: NodeId(node),
            },
        );
    }
    state
}

fn begin(new_shard_count: u8, term: Term) -> Command {
    Command::BeginSplit {
        tenant_id: tenant(),
        new_shard_count,
        new_stripe_size: None,
        term,
    }
}

#[test]
fn split_from_unsharded_to_four_replaces_the_parent_at_commit() {
    let mut state = attached_tenant(0);
    let parent = TenantShardId::unsharded(tenant());
    let Response::SplitBegun(record) = ok(&mut state, begin(4, Term(7))) else {
        panic!("no record");
    };
    assert_eq!(
        record.children().collect::<Vec<_>>(),
        (0..4).map(|n| shard(n, 4)).collect::<Vec<_>>()
    );
    let p = state.shard(&parent).expect("parent stays until the commit");
    assert!(p.splitting);
    assert!(p.intent.secondaries.is_empty(), "secondaries dropped");
    assert_eq!(state.tenant_shards(tenant()).count(), 1);

    ok(
        &mut state,
        Command::CompleteSplit {
            tenant_id: tenant(),
            term: Term(7),
        },
    );
    assert!(state.shard(&parent).is_none());
    assert!(state.split_record(tenant()).is_none());
    let children: Vec<_> = state.tenant_shards(tenant()).cloned().collect();
    assert_eq!(children.len(), 4);
    for c in &children {
        assert_eq!(c.generation, Some(Generation(1)), "parent's generation");
        assert_eq!(c.generation_pageserver, Some(NodeId(1)));
        assert_eq!(c.intent.attached, Some(NodeId(1)), "on the parent's node");
        assert!(c.intent.secondaries.is_empty());
        assert!(!c.splitting);
        assert_eq!(c.config, serde_json::json!({"gc_period": "1h"}));
        assert_eq!(c.placement, PlacementPolicy::Attached(1));
    }
}

#[test]
fn children_follow_their_parent_in_a_two_to_four_split() {
    let mut state = attached_tenant(2);
    ok(&mut state, begin(4, Term(1)));
    ok(
        &mut state,
        Command::CompleteSplit {
            tenant_id: tenant(),
            term: Term(1),
        },
    );
    // Child i belongs to parent i % 2, which was attached on node 1 + (i % 2).
    for n in 0..4u8 {
        let c = state.shard(&shard(n, 4)).expect("child");
        assert_eq!(
            c.intent.attached,
            Some(NodeId(1 + u64::from(n % 2))),
            "child {n}"
        );
    }
}

#[test]
fn validation_answers_match_upstream() {
    let mut state = attached_tenant(4);
    let unknown: TenantId = "ffffffffffffffffffffffffffffffff".parse().expect("id");
    assert!(matches!(
        state.plan_split(unknown, 8, None),
        Err(Rejection::NotFound(_))
    ));
    assert!(matches!(
        state.plan_split(tenant(), 2, None),
        Err(Rejection::BadRequest(m)) if m.contains("already have shards at count 4")
    ));
    assert!(matches!(
        state.plan_split(tenant(), 6, None),
        Err(Rejection::BadRequest(_))
    ));
    assert!(matches!(
        state.plan_split(tenant(), 8, Some(1024)),
        Err(Rejection::BadRequest(m)) if m.contains("stripe")
    ));
    // The same stripe size is not a change.
    assert!(matches!(
        state.plan_split(tenant(), 8, Some(2048)),
        Ok(SplitPlan::Split { .. })
    ));
    assert_eq!(
        state.plan_split(tenant(), 4, None),
        Ok(SplitPlan::NoOp((0..4).map(|n| shard(n, 4)).collect()))
    );
    ok(&mut state, begin(8, Term(1)));
    assert!(matches!(
        rejected(&mut state, begin(8, Term(1))),
        Rejection::Conflict(m) if m.contains("already splitting")
    ));
}

#[test]
fn stripe_size_may_change_only_from_one_shard() {
    let mut state = attached_tenant(0);
    let (r, _) = state.apply(&Command::BeginSplit {
        tenant_id: tenant(),
        new_shard_count: 2,
        new_stripe_size: Some(256),
        term: Term(1),
    });
    let Response::SplitBegun(record) = r else {
        panic!("{r:?}");
    };
    assert_eq!(record.new_stripe_size, 256);
    ok(
        &mut state,
        Command::CompleteSplit {
            tenant_id: tenant(),
            term: Term(1),
        },
    );
    assert!(state.tenant_shards(tenant()).all(|s| s.stripe_size == 256));
}

#[test]
fn a_detached_tenant_cannot_split() {
    let mut state = attached_tenant(0);
    ok(
        &mut state,
        Command::SetTenantPolicy {
            tenant_id: tenant(),
            placement: Some(PlacementPolicy::Detached),
            scheduling: None,
        },
    );
    assert!(matches!(
        rejected(&mut state, begin(2, Term(1))),
        Rejection::BadRequest(m) if m.contains("not attached")
    ));
}

#[test]
fn only_the_beginning_term_completes_and_any_term_aborts() {
    let mut state = attached_tenant(2);
    ok(&mut state, begin(4, Term(3)));
    // A later leader's completion (or an old one's, had a new leader begun it) is refused.
    assert!(matches!(
        rejected(
            &mut state,
            Command::CompleteSplit {
                tenant_id: tenant(),
                term: Term(4)
            }
        ),
        Rejection::Conflict(_)
    ));
    ok(
        &mut state,
        Command::AbortSplit {
            tenant_id: tenant(),
        },
    );
    for n in 0..2 {
        let p = state.shard(&shard(n, 2)).expect("parent back");
        assert!(!p.splitting);
    }
    // The deposed leader's completion after the abort finds nothing to complete.
    assert!(matches!(
        rejected(
            &mut state,
            Command::CompleteSplit {
                tenant_id: tenant(),
                term: Term(3)
            }
        ),
        Rejection::NotFound(_)
    ));
    // And an abort after a completion finds nothing to abort: the split stands.
    ok(&mut state, begin(4, Term(5)));
    ok(
        &mut state,
        Command::CompleteSplit {
            tenant_id: tenant(),
            term: Term(5),
        },
    );
    assert!(matches!(
        rejected(
            &mut state,
            Command::AbortSplit {
                tenant_id: tenant()
            }
        ),
        Rejection::NotFound(_)
    ));
    assert_eq!(state.tenant_shards(tenant()).count(), 4);
}

#[test]
fn a_reattach_during_the_split_prevents_its_completion() {
    let mut state = attached_tenant(2);
    ok(&mut state, begin(4, Term(1)));
    ok(&mut state, Command::ReAttach { node_id: NodeId(1) });
    assert!(matches!(
        rejected(
            &mut state,
            Command::CompleteSplit {
                tenant_id: tenant(),
                term: Term(1)
            }
        ),
        Rejection::Conflict(m) if m.contains("generation moved")
    ));
}

#[test]
fn a_splitting_tenant_keeps_its_intents_generations_and_policy() {
    let mut state = attached_tenant(2);
    ok(&mut state, begin(4, Term(1)));
    let before = state.clone();
    // A scheduling pass planned before the split began is ignored for its shards.
    ok(
        &mut state,
        Command::SetIntents(vec![(
            shard(0, 2),
            Intent {
                attached: Some(NodeId(1)),
                secondaries: vec![NodeId(2)],
            },
        )]),
    );
    assert_eq!(state, before);
    assert!(matches!(
        rejected(
            &mut state,
            Command::IncrementGeneration {
                shard: shard(0, 2),
                node_id: NodeId(2)
            }
        ),
        Rejection::Conflict(_)
    ));
    assert!(matches!(
        rejected(
            &mut state,
            Command::DeleteTenant {
                tenant_id: tenant()
            }
        ),
        Rejection::Conflict(_)
    ));
    assert!(matches!(
        rejected(
            &mut state,
            Command::SetTenantPolicy {
                tenant_id: tenant(),
                placement: Some(PlacementPolicy::Detached),
                scheduling: None,
            }
        ),
        Rejection::Conflict(_)
    ));
}

#[test]
fn a_past_term_cannot_begin_a_split() {
    let mut state = attached_tenant(2);
    ok(
        &mut state,
        Command::RecordLeader {
            node_id: ReplicaId(1),
            term: Term(5),
            address: "http://127.0.0.1:1/".into(),
            started_at: "t5".into(),
        },
    );
    assert!(matches!(
        rejected(&mut state, begin(4, Term(4))),
        Rejection::Conflict(m) if m.contains("term 4")
    ));
    ok(&mut state, begin(4, Term(5)));
}

#[test]
fn a_stopped_tenant_cannot_split() {
    let mut state = attached_tenant(2);
    ok(
        &mut state,
        Command::SetTenantPolicy {
            tenant_id: tenant(),
            placement: None,
            scheduling: Some(state_machine::ShardSchedulingPolicy::Stop),
        },
    );
    assert!(matches!(
        rejected(&mut state, begin(4, Term(1))),
        Rejection::BadRequest(m) if m.contains("Stop")
    ));
}
