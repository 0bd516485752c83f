//! SIGKILL of the leader: the survivors elect another leader, keep accepting writes, lose none of
//! the acknowledged ones, and the killed replica catches up after a restart from its data dir.

use cluster_tests::checks::{check_nodes_everywhere, wait_nodes_local};
use cluster_tests::{Cluster, ClusterOptions, NodeRegisterRequest, deadline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill() {
    let (cluster, old_leader) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("a formed cluster");

    let mut acknowledged: Vec<NodeRegisterRequest> = Vec::new();
    for id in 1..=10 {
        let node = NodeRegisterRequest::fake(id);
        cluster
            .register(old_leader, &node)
            .await
            .expect("registering via the leader");
        acknowledged.push(node);
    }

    cluster.kill(old_leader);
    let new_leader = cluster
        .wait_for_new_leader(old_leader, deadline::ELECTION)
        .await
        .expect("the survivors elect a new leader");
    assert_ne!(new_leader, old_leader);
    let status = cluster
        .status_of(new_leader)
        .await
        .expect("status of the new leader");
    assert_eq!(status.leader_id, Some(new_leader));

    // Keep writing through the survivor that is not the leader, so writes are also forwarded.
    let via = cluster.live_other_than(new_leader);
    let mut retried = Vec::new();
    for id in 11..=20 {
        let node = NodeRegisterRequest::fake(id);
        let outcome = cluster
            .register(via, &node)
            .await
            .expect("writing via a survivor");
        retried.extend(outcome.retried);
        acknowledged.push(node);
    }
    if !retried.is_empty() {
        eprintln!(
            "writes after failover retried {} times: {retried:?}",
            retried.len()
        );
    }

    // Every acknowledged write, before and after the kill, is on both survivors.
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("survivors converge");
    check_nodes_everywhere(&cluster, &acknowledged)
        .await
        .expect("survivors hold every write");

    // The killed replica restarts from its data dir and catches up.
    cluster
        .restart(old_leader)
        .expect("restarting the old leader");
    wait_nodes_local(&cluster, old_leader, &acknowledged, deadline::CONVERGE)
        .await
        .expect("the restarted replica catches up");
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("all three converge");
    check_nodes_everywhere(&cluster, &acknowledged)
        .await
        .expect("every replica holds every write");
    let status = cluster
        .status_of(old_leader)
        .await
        .expect("status of the restarted replica");
    assert!(
        status.leader_id.is_some(),
        "restarted replica knows a leader: {status:?}"
    );
    cluster.check_no_crashes().expect("no replica crashed");
}
