//! The attach hook: issues generations like a reconcile would, creates missing shards, detaches,
//! and never lets a generation go back.

use state_machine::ids::TenantShardId;
use state_machine::{
    Command, Generation, NodeId, NodeRegisterRequest, PlacementPolicy, Rejection, Response, State,
};

const SHARD: &str = "0123456789abcdef0123456789abcdef-0002";

fn state_with_node() -> State {
    let mut state = State::default();
    state.apply(&Command::RegisterNode(NodeRegisterRequest {
        node_id: NodeId(1),
        listen_pg_addr: "h".into(),
        listen_pg_port: 1,
        listen_grpc_addr: None,
        listen_grpc_port: None,
        listen_http_addr: "h".into(),
        listen_http_port: 1,
        listen_https_port: None,
        availability_zone_id: "az".into(),
        node_ip_addr: None,
    }));
    state
}

fn hook(node_id: Option<NodeId>, generation_override: Option<Generation>) -> Command {
    Command::AttachHook {
        shard: SHARD.parse().expect("id"),
        node_id,
        generation_override,
        config: None,
    }
}

#[test]
fn attaches_creates_and_detaches() {
    let mut state = state_with_node();
    let id: TenantShardId = SHARD.parse().expect("id");
    assert_eq!(
        state.apply(&hook(Some(NodeId(1)), None)).0,
        Response::AttachHook(Some(Generation(1)))
    );
    assert_eq!(
        state.apply(&hook(Some(NodeId(1)), None)).0,
        Response::AttachHook(Some(Generation(2)))
    );
    let s = state.shard(&id).expect("created");
    assert_eq!(s.generation_pageserver, Some(NodeId(1)));
    assert_eq!(s.placement, PlacementPolicy::Attached(0));
    assert_eq!(s.intent.attached, Some(NodeId(1)));

    assert_eq!(state.apply(&hook(None, None)).0, Response::AttachHook(None));
    let s = state.shard(&id).expect("kept");
    assert_eq!(s.placement, PlacementPolicy::Detached);
    assert_eq!(s.generation_pageserver, None);
    assert_eq!(
        s.generation,
        Some(Generation(2)),
        "a detach keeps the generation"
    );
}

#[test]
fn overrides_may_not_go_back() {
    let mut state = state_with_node();
    assert_eq!(
        state.apply(&hook(Some(NodeId(1)), Some(Generation(7)))).0,
        Response::AttachHook(Some(Generation(7)))
    );
    let before = state.clone();
    let (r, muts) = state.apply(&hook(Some(NodeId(1)), Some(Generation(3))));
    assert!(
        matches!(r, Response::Rejected(Rejection::Conflict(_))),
        "{r:?}"
    );
    assert!(muts.is_empty());
    assert_eq!(state, before);
}

#[test]
fn unknown_node_and_other_shard_count_are_refused() {
    let mut state = state_with_node();
    let (r, _) = state.apply(&hook(Some(NodeId(9)), None));
    assert!(
        matches!(r, Response::Rejected(Rejection::NotFound(_))),
        "{r:?}"
    );
    state.apply(&hook(Some(NodeId(1)), None));
    let (r, _) = state.apply(&Command::AttachHook {
        shard: "0123456789abcdef0123456789abcdef-0004".parse().expect("id"),
        node_id: Some(NodeId(1)),
        generation_override: None,
        config: None,
    });
    assert!(
        matches!(r, Response::Rejected(Rejection::Conflict(_))),
        "{r:?}"
    );
}
