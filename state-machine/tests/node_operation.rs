//! Node operations, pure: the commands that record a drain or fill (one at a time, the node's
//! policy as the record's witness, a re-attach ending it), the plans of what moves, and the
//! dry-run previews built from them.

use state_machine::ids::{ShardCount, TenantId, TenantShardId};
use state_machine::node_operation::{
    NodeOperation, NodeOperationKind, drain_candidates, fill_plan,
};
use state_machine::scheduler::NodeView;
use state_machine::{
    Command, CreateTenant, Intent, NodeId, NodeRegisterRequest, NodeSchedulingPolicy,
    PlacementPolicy, Rejection, Response, State,
};

fn register(state: &mut State, id: u64) {
    let (r, _) = state.apply(&Command::RegisterNode(register_request(id)));
    assert!(!matches!(r, Response::Rejected(_)), "{r:?}");
}

fn tenant(n: u32) -> TenantId {
    format!("{n:032x}").parse().expect("tenant id")
}

/// `count`-shard tenant `n`, each shard attached on `attached` with secondary `secondary`.
fn place(state: &mut State, n: u32, count: u8, attached: u64, secondary: u64) {
    let (r, _) = state.apply(&Command::CreateTenant(CreateTenant {
        tenant_id: tenant(n),
        shard_count: count,
        stripe_size: 2048,
        placement: PlacementPolicy::Attached(1),
        config: serde_json::json!({}),
        preferred_az: Some("az-a".into()),
        generation: None,
    }));
    assert!(!matches!(r, Response::Rejected(_)), "{r:?}");
    let intents = (0..count.max(1))
        .map(|number| {
            (
                TenantShardId {
                    tenant_id: tenant(n),
                    shard_number: if count == 0 { 0 } else { number },
                    shard_count: ShardCount(count),
                },
                Intent {
                    attached: Some(NodeId(attached)),
                    secondaries: vec![NodeId(secondary)],
                },
            )
        })
        .collect();
    state.apply(&Command::SetIntents(intents));
}

fn views(ids: &[u64]) -> Vec<NodeView> {
    ids.iter()
        .map(|id| NodeView {
            id: NodeId(*id),
            az: "az-a".into(),
            available: true,
            may_schedule: true,
            utilization_score: 0,
        })
        .collect()
}

fn register_request(id: u64) -> NodeRegisterRequest {
    NodeRegisterRequest {
        node_id: NodeId(id),
        listen_pg_addr: "h".into(),
        listen_pg_port: id as u16,
        listen_grpc_addr: None,
        listen_grpc_port: None,
        listen_http_addr: "h".into(),
        listen_http_port: id as u16,
        listen_https_port: None,
        availability_zone_id: "az-a".into(),
        node_ip_addr: None,
    }
}

fn three_nodes() -> State {
    let mut state = State::default();
    for id in 1..=3 {
        register(&mut state, id);
    }
    state
}

fn policy(state: &State, id: u64) -> NodeSchedulingPolicy {
    state.node(NodeId(id)).expect("node").scheduling
}

#[test]
fn one_operation_at_a_time_and_how_each_ends() {
    let mut state = three_nodes();
    let drain = NodeOperation {
        node: NodeId(1),
        kind: NodeOperationKind::Drain,
        force: false,
    };
    let fill = NodeOperation {
        node: NodeId(2),
        kind: NodeOperationKind::Fill,
        force: false,
    };
    assert_eq!(
        state.apply(&Command::StartNodeOperation(drain)).0,
        Response::Done
    );
    assert_eq!(policy(&state, 1), NodeSchedulingPolicy::Draining);
    let again = state.apply(&Command::StartNodeOperation(drain)).0;
    assert!(
        matches!(again, Response::Rejected(Rejection::Conflict(_))),
        "{again:?}"
    );
    let other = state.apply(&Command::StartNodeOperation(fill)).0;
    assert!(
        matches!(other, Response::Rejected(Rejection::PreconditionFailed(_))),
        "{other:?}"
    );
    let wrong = state
        .apply(&Command::FinishNodeOperation {
            operation: fill,
            cancelled: true,
        })
        .0;
    assert!(matches!(
        wrong,
        Response::Rejected(Rejection::PreconditionFailed(_))
    ));
    // Done: paused for the restart; the restart's re-attach makes it Active.
    state.apply(&Command::FinishNodeOperation {
        operation: drain,
        cancelled: false,
    });
    assert_eq!(policy(&state, 1), NodeSchedulingPolicy::PauseForRestart);
    assert!(state.node_operation().is_none());
    let paused = state.apply(&Command::StartNodeOperation(drain)).0;
    assert!(
        matches!(paused, Response::Rejected(Rejection::PreconditionFailed(_))),
        "a paused node is not drained again: {paused:?}"
    );
    state.apply(&Command::ReAttach { node_id: NodeId(1) });
    assert_eq!(policy(&state, 1), NodeSchedulingPolicy::Active);
    // A cancelled fill leaves Active; a re-attach during a drain ends the drain.
    state.apply(&Command::StartNodeOperation(fill));
    state.apply(&Command::FinishNodeOperation {
        operation: fill,
        cancelled: true,
    });
    assert_eq!(policy(&state, 2), NodeSchedulingPolicy::Active);
    state.apply(&Command::StartNodeOperation(drain));
    let (_, muts) = state.apply(&Command::ReAttach { node_id: NodeId(1) });
    assert!(
        state.node_operation().is_none(),
        "the restart ended the drain"
    );
    assert!(
        muts.iter()
            .any(|m| m.key == "meta/node_operation" && m.value.is_none())
    );
    state.apply(&Command::StartNodeOperation(fill));
    assert_eq!(state.node_operation(), Some(&fill));
    state.validate().expect("valid");
}

#[test]
fn drain_moves_what_is_attached_there_to_its_secondary() {
    let mut state = three_nodes();
    place(&mut state, 1, 0, 1, 2);
    place(&mut state, 2, 0, 1, 3);
    place(&mut state, 3, 0, 2, 1);
    let planned = drain_candidates(&state, NodeId(1), &views(&[2, 3]));
    let targets: Vec<Option<NodeId>> = planned.iter().map(|(_, to)| *to).collect();
    assert_eq!(targets, vec![Some(NodeId(2)), Some(NodeId(3))]);
    // A secondary on a node that may not take work is no target.
    let planned = drain_candidates(&state, NodeId(1), &views(&[3]));
    assert_eq!(
        planned.iter().map(|(_, to)| *to).collect::<Vec<_>>(),
        vec![None, Some(NodeId(3))]
    );
}

#[test]
fn fill_takes_its_share_from_the_most_loaded() {
    let mut state = three_nodes();
    // Node 1 holds 4, node 3 holds 2, node 2 (restarted) none; every secondary is on 2.
    for n in 1..=4 {
        place(&mut state, n, 0, 1, 2);
    }
    for n in 5..=6 {
        place(&mut state, n, 0, 3, 2);
    }
    let plan = fill_plan(&state, NodeId(2), &views(&[1, 2, 3]));
    assert_eq!(plan.len(), 2, "{plan:?}");
    assert!(plan.iter().all(|(_, from)| *from == NodeId(1)), "{plan:?}");

    // At most max(shards / nodes, 1) of one tenant: a 2-shard tenant gives one.
    let mut state = three_nodes();
    place(&mut state, 7, 2, 1, 2);
    place(&mut state, 8, 0, 1, 2);
    place(&mut state, 9, 0, 1, 3);
    let plan = fill_plan(&state, NodeId(2), &views(&[1, 2, 3]));
    let tenants: Vec<TenantId> = plan.iter().map(|(s, _)| s.tenant_id).collect();
    assert_eq!(
        tenants.iter().filter(|t| **t == tenant(7)).count(),
        1,
        "{plan:?}"
    );
    assert_eq!(plan.len(), 1, "share is 4/3 = 1: {plan:?}");
}

#[test]
fn a_deleted_node_leaves_a_tombstone() {
    let mut state = three_nodes();
    place(&mut state, 1, 0, 1, 2);
    let delete = NodeOperation {
        node: NodeId(1),
        kind: NodeOperationKind::Delete,
        force: false,
    };
    state.apply(&Command::StartNodeOperation(delete));
    assert_eq!(policy(&state, 1), NodeSchedulingPolicy::Deleting);
    assert_eq!(
        state.apply(&Command::DeleteNode { node_id: NodeId(1) }).0,
        Response::Done
    );
    assert!(state.node(NodeId(1)).is_none());
    assert!(
        state.node_operation().is_none(),
        "the delete's record ends with it"
    );
    assert!(state.is_tombstoned(NodeId(1)));
    let shard = state.shards().next().expect("shard");
    assert!(!shard.intent.contains(NodeId(1)), "{shard:?}");
    // The id can neither register nor re-attach until the tombstone goes.
    let (r, _) = state.apply(&Command::RegisterNode(register_request(1)));
    assert!(
        matches!(r, Response::Rejected(Rejection::Conflict(_))),
        "{r:?}"
    );
    let refused = state.apply(&Command::ReAttach { node_id: NodeId(1) }).0;
    assert!(
        matches!(refused, Response::Rejected(Rejection::Conflict(_))),
        "{refused:?}"
    );
    let in_use = state
        .apply(&Command::DeleteTombstone { node_id: NodeId(2) })
        .0;
    assert!(
        matches!(in_use, Response::Rejected(Rejection::Conflict(_))),
        "{in_use:?}"
    );
    assert_eq!(
        state
            .apply(&Command::DeleteTombstone { node_id: NodeId(1) })
            .0,
        Response::Done
    );
    let gone = state
        .apply(&Command::DeleteTombstone { node_id: NodeId(1) })
        .0;
    assert!(
        matches!(gone, Response::Rejected(Rejection::NotFound(_))),
        "{gone:?}"
    );
    register(&mut state, 1);
    assert!(state.node(NodeId(1)).is_some(), "registered again");
    state.validate().expect("valid");
}

#[test]
fn drain_and_fill_previews_follow_the_plans() {
    use state_machine::preview;
    let mut state = three_nodes();
    place(&mut state, 1, 0, 1, 2);
    place(&mut state, 2, 0, 1, 3);
    place(&mut state, 3, 0, 1, 2);
    // Tenant 3 loses its secondary: the drain would move it cold.
    let lone = TenantShardId::unsharded(tenant(3));
    state.apply(&Command::SetIntents(vec![(
        lone,
        Intent {
            attached: Some(NodeId(1)),
            secondaries: vec![],
        },
    )]));
    let views = views(&[1, 2, 3]);
    let moves = preview::drain(&state, NodeId(1), &views);
    let by_shard: Vec<(TenantShardId, Option<NodeId>, Option<NodeId>)> = moves
        .iter()
        .map(|m| (m.tenant_shard_id, m.from, m.to))
        .collect();
    assert_eq!(
        by_shard,
        vec![
            (
                TenantShardId::unsharded(tenant(1)),
                Some(NodeId(1)),
                Some(NodeId(2))
            ),
            (
                TenantShardId::unsharded(tenant(2)),
                Some(NodeId(1)),
                Some(NodeId(3))
            ),
            // The fallback: the node with the fewest attachments (none on either), lowest id.
            (lone, Some(NodeId(1)), Some(NodeId(2))),
        ]
    );
    assert!(moves[2].note.contains("cold"), "{:?}", moves[2]);
    assert_eq!(
        moves.len(),
        drain_candidates(&state, NodeId(1), &views).len()
    );
    // A fill of node 2 takes from node 1, as the plan does.
    let fill = preview::fill(&state, NodeId(2), &views);
    let plan = fill_plan(&state, NodeId(2), &views);
    assert_eq!(plan, vec![(TenantShardId::unsharded(tenant(1)), NodeId(1))]);
    assert_eq!(
        fill.iter()
            .map(|m| (m.tenant_shard_id, m.from.expect("from")))
            .collect::<Vec<_>>(),
        plan
    );
    assert!(fill.iter().all(|m| m.to == Some(NodeId(2))));
    // The start checks a preview runs are the command's own.
    let drain = NodeOperation {
        node: NodeId(1),
        kind: NodeOperationKind::Drain,
        force: false,
    };
    assert_eq!(state.check_start_node_operation(&drain), Ok(()));
    state.apply(&Command::StartNodeOperation(drain));
    assert!(matches!(
        state.check_start_node_operation(&drain),
        Err(Rejection::Conflict(_))
    ));
    let fill_op = NodeOperation {
        node: NodeId(2),
        kind: NodeOperationKind::Fill,
        force: false,
    };
    assert!(matches!(
        state.check_start_node_operation(&fill_op),
        Err(Rejection::PreconditionFailed(_))
    ));
}
