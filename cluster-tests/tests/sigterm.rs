//! A stop request (SIGTERM, as systemd and docker send) ends a replica promptly with status 0,
//! whether it is still waiting for its peers to form the cluster or already serving in one.
//! (A pristine replica waiting in formation once ignored it: its listener stopped, so no peer
//! could reach it, and it waited for peers forever.)

use std::time::Duration;

use cluster_tests::{Cluster, ClusterOptions, deadline, wait_until};

/// Generous for a loaded machine; a stop takes well under a second when idle.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_replica_waiting_for_its_peers() {
    let cluster = Cluster::configure(ClusterOptions::default(), None, None).expect("configs");
    // Only replica 1 runs: a pristine cluster cannot form, so it waits for the others.
    cluster.restart(1).expect("start replica 1");
    wait_until(
        "replica 1 to wait for its peers",
        deadline::STARTUP,
        async || {
            let log = cluster.log_since_last_start(1);
            anyhow::ensure!(
                log.contains("waiting for all members"),
                "not waiting yet: {log}"
            );
            Ok(())
        },
    )
    .await
    .expect("replica 1 waits in formation");
    cluster.terminate(1).expect("SIGTERM");
    let status = cluster
        .wait_exit(1, STOP_DEADLINE)
        .await
        .expect("replica 1 exits after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(
        cluster
            .log_since_last_start(1)
            .contains("stopped before taking part in Raft"),
        "{}",
        cluster.log_since_last_start(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_replica_of_a_formed_cluster() {
    let (cluster, leader) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("a formed cluster");
    let follower = cluster.live_other_than(leader);
    cluster.terminate(follower).expect("SIGTERM");
    let status = cluster
        .wait_exit(follower, STOP_DEADLINE)
        .await
        .expect("the follower exits after SIGTERM");
    assert!(status.success(), "{status}");
    cluster.terminate(leader).expect("SIGTERM");
    let status = cluster
        .wait_exit(leader, STOP_DEADLINE)
        .await
        .expect("the leader exits after SIGTERM");
    assert!(status.success(), "{status}");
    cluster.check_no_crashes().expect("no other exit");
}
