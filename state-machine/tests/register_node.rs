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

#[test]
fn node_ip_addr_must_be_an_ip_address() {
    let mut r = req(1);
    for good in ["10.1.2.3", "::1", "fe80::1"] {
        r.node_ip_addr = Some(good.into());
        assert_eq!(r.check_node_ip_addr(), Ok(()), "{good}");
    }
    for bad in ["not-an-ip", "10.1.2", "ps1.example", ""] {
        r.node_ip_addr = Some(bad.into());
        let e = r.check_node_ip_addr().expect_err(bad);
        assert!(e.0.contains("node_ip_addr"), "{bad}: {e}");
    }
}

/// `GET /control/v1/node/:id/shards`: intended shards say attached (`false`) or secondary
/// (`true`); one only observed there says `null`, as upstream; an unknown node has none.
#[test]
fn node_shards_tell_intended_from_observed() {
    use state_machine::{CreateTenant, Intent, PlacementPolicy};
    use std::collections::BTreeMap;

    let mut state = State::default();
    for id in 1..=3 {
        state.apply(&Command::RegisterNode(req(id)));
    }
    let tenant = "1f359dd625e519a1a4e8d7509690f6fc".parse().expect("id");
    state.apply(&Command::CreateTenant(CreateTenant {
        tenant_id: tenant,
        shard_count: 0,
        stripe_size: 2048,
        placement: PlacementPolicy::Attached(1),
        config: serde_json::json!({}),
        preferred_az: None,
        generation: None,
    }));
    let shard = state.tenant_shards(tenant).next().expect("shard").id;
    state.apply(&Command::SetIntents(vec![(
        shard,
        Intent {
            attached: Some(NodeId(1)),
            secondaries: vec![NodeId(2)],
        },
    )]));
    let intended = |node: u64, observed: Option<bool>| {
        let obs = BTreeMap::from([(shard, observed)]);
        state
            .node_shards(NodeId(node), &obs)
            .into_iter()
            .map(|s| {
                (
                    s.tenant_shard_id,
                    s.is_intended_secondary,
                    s.is_observed_secondary,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        intended(1, Some(false)),
        vec![(shard, Some(false), Some(false))]
    );
    assert_eq!(intended(2, None), vec![(shard, Some(true), None)]);
    // Observed on node 3 (say, a leftover being detached) but not intended there.
    assert_eq!(intended(3, Some(true)), vec![(shard, None, Some(true))]);
    assert!(state.node_shards(NodeId(9), &BTreeMap::new()).is_empty());
}
