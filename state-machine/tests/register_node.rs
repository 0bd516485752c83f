//! Upstream node registration semantics, applied directly to the state.

use state_machine::{
    Command, NodeId, NodeRegisterRequest, RegisterOutcome, Rejection, ReplicaId, Response, State,
    Term,
};

fn req(id: u64) -> NodeRegisterRequest {
    NodeRegisterRequest {
        node_id: NodeId(id),
        listen_pg_addr: format!("ps{id}"),
        listen_pg_port: 64000,
        listen_grpc_addr: None,
        listen_grpc_port: None,
        listen_http_addr: format!("ps{id}"),
        listen_http_port: 9898,
        listen_https_port: None,
        availability_zone_id: "az-a".into(),
        node_ip_addr: None,
    }
}

#[test]
fn first_register_creates_and_repeat_is_unchanged() {
    let mut state = State::default();
    let (resp, muts) = state.apply(&Command::RegisterNode(req(1)));
    assert_eq!(resp, Response::NodeRegistered(RegisterOutcome::Created));
    assert_eq!(muts.len(), 1);
    let (resp, muts) = state.apply(&Command::RegisterNode(req(1)));
    assert_eq!(resp, Response::NodeRegistered(RegisterOutcome::Unchanged));
    assert!(muts.is_empty());
    assert_eq!(state.nodes().count(), 1);
}

#[test]
fn changed_address_or_az_conflicts_and_changes_nothing() {
    let mut state = State::default();
    state.apply(&Command::RegisterNode(req(1)));
    let before = state.clone();
    for change in [
        |r: &mut NodeRegisterRequest| r.listen_http_port = 1,
        |r: &mut NodeRegisterRequest| r.listen_http_addr = "other".into(),
        |r: &mut NodeRegisterRequest| r.listen_pg_port = 1,
        |r: &mut NodeRegisterRequest| r.listen_pg_addr = "other".into(),
        |r: &mut NodeRegisterRequest| r.availability_zone_id = "az-b".into(),
    ] {
        let mut r = req(1);
        change(&mut r);
        let (resp, muts) = state.apply(&Command::RegisterNode(r));
        assert!(
            matches!(resp, Response::Rejected(Rejection::Conflict(ref m)) if m.contains("different address")),
            "{resp:?}"
        );
        assert!(muts.is_empty());
        assert_eq!(state, before);
    }
}

#[test]
fn https_and_grpc_changes_update_in_place() {
    let mut state = State::default();
    state.apply(&Command::RegisterNode(req(1)));
    let mut r = req(1);
    r.listen_https_port = Some(9899);
    r.listen_grpc_addr = Some("ps1".into());
    r.listen_grpc_port = Some(51051);
    let (resp, muts) = state.apply(&Command::RegisterNode(r));
    assert_eq!(resp, Response::NodeRegistered(RegisterOutcome::Updated));
    assert_eq!(muts.len(), 1);
    let node = state.node(NodeId(1)).expect("registered");
    assert_eq!(node.listen_https_port, Some(9899));
    assert_eq!(node.listen_grpc_port, Some(51051));
}

#[test]
fn half_grpc_endpoint_is_a_bad_request() {
    let mut state = State::default();
    let mut r = req(1);
    r.listen_grpc_port = Some(1);
    let (resp, muts) = state.apply(&Command::RegisterNode(r));
    assert!(matches!(resp, Response::Rejected(Rejection::BadRequest(_))));
    assert!(muts.is_empty());
    assert_eq!(state, State::default());
}

#[test]
fn leader_record_never_goes_back_in_term() {
    let mut state = State::default();
    let rec = |term: u64| Command::RecordLeader {
        node_id: ReplicaId(term),
        term: Term(term),
        address: "http://127.0.0.1:1/".into(),
        started_at: "2026-11-25T00:00:00Z".into(),
    };
    assert_eq!(state.apply(&rec(3)).0, Response::LeaderRecorded);
    assert!(matches!(state.apply(&rec(2)).0, Response::Rejected(_)));
    assert_eq!(state.leader().map(|l| l.term), Some(Term(3)));
    assert_eq!(state.apply(&rec(4)).0, Response::LeaderRecorded);
}
