//! A replica whose data dir was wiped must not bootstrap a second cluster next to the existing
//! one: it exits with an error, and the other two keep serving.

use cluster_tests::checks::check_nodes_everywhere;
use cluster_tests::{Cluster, ClusterOptions, NodeRegisterRequest, deadline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_replica() {
    let (cluster, leader) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("a formed cluster");

    let mut registered: Vec<NodeRegisterRequest> = (1..=5).map(NodeRegisterRequest::fake).collect();
    for node in &registered {
        cluster
            .register(leader, node)
            .await
            .expect("registering via the leader");
    }
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge");

    let victim = cluster.live_other_than(leader);
    cluster.kill(victim);
    cluster
        .wipe(victim)
        .expect("wiping the follower's data dir");
    let left = std::fs::read_dir(cluster.data_dir(victim))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "data dir is empty after the wipe");

    cluster
        .restart(victim)
        .expect("restarting the wiped follower");
    let status = cluster
        .wait_exit(victim, deadline::EXIT)
        .await
        .expect("the wiped replica exits on its own");
    assert!(
        !status.success(),
        "the wiped replica must fail, it exited with {status}"
    );
    let log = cluster.log_since_last_start(victim);
    assert!(
        log.contains("refusing to bootstrap"),
        "the wiped replica's output should say it is refusing to bootstrap:\n{log}"
    );

    // The two remaining replicas still form a majority and serve writes, through either of them.
    let survivors = cluster.live_ids();
    assert_eq!(survivors.len(), 2);
    for (i, via) in survivors.iter().enumerate() {
        let node = NodeRegisterRequest::fake(100 + i as u64);
        cluster
            .register(*via, &node)
            .await
            .expect("writing via a survivor");
        registered.push(node);
    }
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("survivors converge");
    check_nodes_everywhere(&cluster, &registered)
        .await
        .expect("survivors hold every write");
    assert!(!cluster.is_running(victim), "the wiped replica stays down");
    cluster.check_no_crashes().expect("no replica crashed");
}
