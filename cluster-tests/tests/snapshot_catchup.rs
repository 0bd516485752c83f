//! A follower that was down while the leader snapshotted and purged its log catches up by
//! installing a snapshot, and ends up with every entry.

use cluster_tests::checks::{check_nodes_everywhere, wait_nodes_local};
use cluster_tests::{Cluster, ClusterOptions, NodeRegisterRequest, RaftOptions, deadline};
use futures::stream::{self, StreamExt, TryStreamExt};

const SNAPSHOT_THRESHOLD: u64 = 50;
/// How much the log grows while the follower is down: several snapshots, each purging.
const LOG_GROWTH: u64 = 4 * SNAPSHOT_THRESHOLD;
const WRITES_PER_ROUND: u64 = 100;
const MAX_ROUNDS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_catchup() {
    let opts = ClusterOptions {
        raft: RaftOptions {
            snapshot_threshold: Some(SNAPSHOT_THRESHOLD),
            snapshot_keep_logs: Some(5),
            ..RaftOptions::test_defaults()
        },
        ..ClusterOptions::default()
    };
    let (cluster, leader) = Cluster::start_formed(opts).await.expect("a formed cluster");

    let mut registered: Vec<NodeRegisterRequest> = (1..=3).map(NodeRegisterRequest::fake).collect();
    for node in &registered {
        cluster
            .register(leader, node)
            .await
            .expect("registering via the leader");
    }
    let before = cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge");

    let follower = cluster.live_other_than(leader);
    cluster.kill(follower);

    // Many more entries than the snapshot threshold, a few writers at a time. Writes go to
    // whichever survivor leads (the survivors may re-elect on a slow machine). Concurrent
    // writes share log entries (group commit), so the log is what is counted: rounds of
    // writes until it has grown by several snapshot thresholds.
    let survivor = cluster.live_ids()[0];
    let mut after = before;
    let mut next_id = 4;
    for _ in 0..MAX_ROUNDS {
        if after >= before + LOG_GROWTH {
            break;
        }
        let more: Vec<NodeRegisterRequest> = (next_id..next_id + WRITES_PER_ROUND)
            .map(NodeRegisterRequest::fake)
            .collect();
        next_id += WRITES_PER_ROUND;
        stream::iter(&more)
            .map(|node| cluster.register(survivor, node))
            .buffer_unordered(8)
            .try_collect::<Vec<_>>()
            .await
            .expect("writes while the follower is down");
        registered.extend(more);
        after = cluster
            .wait_converged(deadline::CONVERGE)
            .await
            .expect("survivors converge");
    }
    assert!(
        after >= before + LOG_GROWTH,
        "the log grew from {before} to {after} over {} writes",
        next_id - 4
    );

    cluster.restart(follower).expect("restarting the follower");
    wait_nodes_local(&cluster, follower, &registered, deadline::CONVERGE)
        .await
        .expect("the restarted follower catches up");
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("all three converge");
    check_nodes_everywhere(&cluster, &registered)
        .await
        .expect("every replica holds every write");

    let log = cluster.log_since_last_start(follower);
    assert!(
        log.contains("installed snapshot"),
        "the restarted follower ({}) should have caught up through a snapshot, but its log since \
         the restart has no `installed snapshot` line",
        cluster.log_path(follower).display()
    );
    cluster.check_no_crashes().expect("no replica crashed");
}
