//! A forged AppendEntries once wedged the cluster for good: anyone who could reach the listener
//! posted `/raft/append` from a phantom leader (node 9, not a member) at term 2^63, every
//! replica followed it, and the next election overflowed the term (issue 8).
//!
//! Here, against every replica (followers and the leader), each RPC names its target in
//! `x-storcon-target-node` so it passes the routing check: AppendEntries from node 9 at term
//! 2^63, AppendEntries from the real leader's id at term 2^63, and RequestVote from node 9 (at
//! term 2^63 and at the next honest term) are each 403 with a `msg` saying why (`not a member`,
//! or a term implausibly far ahead). Afterwards every replica names the same leader in the same
//! term (a legitimate re-election may have raised it by a few), a registration through a
//! follower commits and is listed everywhere, and no replica exited.
//!
//! With `[auth]`: the Raft RPCs take only `controller_peer` tokens, so an `admin` token is 403
//! at the scope check (a leaked operator token cannot forge a leader either), while a
//! `controller_peer` token gets as far as the sender check, which refuses the phantom.

use cluster_tests::auth::{test_auth, token};
use cluster_tests::checks::{assert_no_failures, check_nodes_everywhere};
use cluster_tests::{
    Cluster, ClusterOptions, ClusterStatus, NodeRegisterRequest, RawResponse, deadline,
};
use reqwest::Method;
use serde_json::{Value, json};

const TARGET_NODE_HEADER: &str = "x-storcon-target-node";
/// The forged sender: not a member of the three-replica cluster.
const PHANTOM: u64 = 9;
/// The forged term: 2^63.
const HUGE_TERM: u64 = 1 << 63;
/// How far the term may rise through legitimate elections while the test runs.
const MAX_HONEST_TERM_RISE: u64 = 100;

/// openraft 0.9's `Vote` as JSON.
fn vote(term: u64, node_id: u64, committed: bool) -> Value {
    json!({"leader_id": {"term": term, "node_id": node_id}, "committed": committed})
}

/// An empty AppendEntries (a heartbeat) from `node_id` as leader of `term`.
fn append_body(term: u64, node_id: u64) -> String {
    json!({
        "vote": vote(term, node_id, true),
        "prev_log_id": null,
        "entries": [],
        "leader_commit": null,
    })
    .to_string()
}

/// A RequestVote from candidate `node_id` in `term`.
fn vote_body(term: u64, node_id: u64) -> String {
    json!({"vote": vote(term, node_id, false), "last_log_id": null}).to_string()
}

/// POSTs `body` to `path` on replica `target`, naming it as the RPC's target.
async fn rpc(
    cluster: &Cluster,
    target: u64,
    path: &str,
    body: String,
    authorization: Option<&str>,
) -> RawResponse {
    let target_header = target.to_string();
    let mut headers = vec![(TARGET_NODE_HEADER, target_header.as_str())];
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    cluster
        .request(target, Method::POST, path, Some(body), &headers)
        .await
}

/// Why `resp` is not a 403 whose `msg` contains `want`, if it is not.
fn judge_refused(resp: &RawResponse, want: &str) -> Option<String> {
    if resp.status != 403 {
        return Some(format!("HTTP {}, expected 403", resp.status));
    }
    match resp.msg() {
        Some(msg) if msg.contains(want) => None,
        Some(msg) => Some(format!(
            "403 with msg {msg:?}, expected it to mention {want:?}"
        )),
        None => Some("403 without a {\"msg\"} body".to_owned()),
    }
}

/// Checks that the replicas agree on a leader, and that it is the leader of `before` in the
/// same term, or a leader elected legitimately since (a term at most a few above).
async fn expect_leadership_kept(cluster: &Cluster, leader: u64, before: &[ClusterStatus]) {
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge on one leader");
    let term_before = before.iter().map(|s| s.term).max().expect("replicas");
    let after = cluster.all_statuses().await.expect("every replica answers");
    for s in &after {
        assert!(
            s.term >= term_before && s.term - term_before < MAX_HONEST_TERM_RISE,
            "replica {}: term {} (was {term_before}): a forged term was taken; {after:?}",
            s.node_id,
            s.term
        );
        if s.term == term_before {
            assert_eq!(
                s.leader_id,
                Some(leader),
                "replica {}: leader changed within term {term_before}; {after:?}",
                s.node_id
            );
        }
        assert!(
            s.leader_id.is_some_and(|l| l != PHANTOM),
            "replica {} follows {:?}; {after:?}",
            s.node_id,
            s.leader_id
        );
        let mut member_ids: Vec<u64> = s.members.iter().map(|m| m.id).collect();
        member_ids.sort_unstable();
        assert_eq!(
            member_ids,
            cluster.ids(),
            "replica {}: membership",
            s.node_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_raft_rpc() {
    let (cluster, leader) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("a formed cluster");
    let follower = cluster.live_other_than(leader);
    let before = cluster.all_statuses().await.expect("every replica answers");
    let term = before.iter().map(|s| s.term).max().expect("replicas");

    // Followers first (the replicas a phantom leader would capture), then the leader.
    let mut targets: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    targets.push(leader);
    let forged: Vec<(&str, &str, String, &str)> = vec![
        (
            "AppendEntries from node 9 at term 2^63",
            "/raft/append",
            append_body(HUGE_TERM, PHANTOM),
            "not a member",
        ),
        (
            "AppendEntries from the leader's id at term 2^63",
            "/raft/append",
            append_body(HUGE_TERM, leader),
            "implausibly far above",
        ),
        (
            "RequestVote from node 9 at term 2^63",
            "/raft/vote",
            vote_body(HUGE_TERM, PHANTOM),
            "not a member",
        ),
        (
            "RequestVote from node 9 at the next term",
            "/raft/vote",
            vote_body(term + 1, PHANTOM),
            "not a member",
        ),
    ];
    let mut failures = Vec::new();
    for &target in &targets {
        for (what, path, body, want) in &forged {
            let resp = rpc(&cluster, target, path, body.clone(), None).await;
            if let Some(problem) = judge_refused(&resp, want) {
                failures.push(format!(
                    "{what} to replica {target}: {problem}; body {:?}",
                    resp.body
                ));
            }
        }
    }
    assert_no_failures(&failures, "forged RPCs answered wrongly");
    cluster.check_no_crashes().expect("no replica exited");
    expect_leadership_kept(&cluster, leader, &before).await;

    // The cluster still commits: a registration through a follower is listed everywhere.
    let node = NodeRegisterRequest::fake(1);
    cluster
        .register(follower, &node)
        .await
        .expect("a write through a follower commits");
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge after the write");
    check_nodes_everywhere(&cluster, std::slice::from_ref(&node))
        .await
        .expect("every replica lists the registered node");
    expect_leadership_kept(&cluster, leader, &before).await;
    cluster.check_no_crashes().expect("no replica exited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_rpc_scope() {
    let files = tempfile::tempdir().expect("tempdir");
    let auth = test_auth(files.path());
    let (cluster, leader) =
        Cluster::start_formed_with_auth(ClusterOptions::default(), None, Some(auth))
            .await
            .expect("a formed cluster with auth");
    let before = cluster.all_statuses().await.expect("every replica answers");

    let admin = format!("Bearer {}", token("admin"));
    let peer = format!("Bearer {}", token("controller_peer"));
    let mut failures = Vec::new();
    for target in cluster.ids() {
        for (path, body) in [
            ("/raft/append", append_body(HUGE_TERM, PHANTOM)),
            ("/raft/vote", vote_body(HUGE_TERM, PHANTOM)),
        ] {
            // `admin` passes everywhere else, but not here: refused at the scope check.
            let resp = rpc(&cluster, target, path, body.clone(), Some(&admin)).await;
            if let Some(problem) = judge_refused(&resp, "Forbidden: JWT scope 'admin'") {
                failures.push(format!(
                    "{path} to replica {target} with admin: {problem}; body {:?}",
                    resp.body
                ));
            }
            // A peer token passes the scope check and reaches the sender check.
            let resp = rpc(&cluster, target, path, body.clone(), Some(&peer)).await;
            if let Some(problem) = judge_refused(&resp, "not a member") {
                failures.push(format!(
                    "{path} to replica {target} with controller_peer: {problem}; body {:?}",
                    resp.body
                ));
            }
            if resp.msg().is_some_and(|m| m.starts_with("Forbidden: JWT")) {
                failures.push(format!(
                    "{path} to replica {target} with controller_peer stopped at the token check: {:?}",
                    resp.body
                ));
            }
        }
    }
    assert_no_failures(&failures, "RPCs answered wrongly");
    cluster.check_no_crashes().expect("no replica exited");
    expect_leadership_kept(&cluster, leader, &before).await;
}
