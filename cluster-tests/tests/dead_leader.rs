//! The dead-leader detector (appliance `dead_leader.rs`): a SIGKILLed leader, whose address then
//! refuses connections, is replaced through an election a survivor starts as soon as the
//! lease ends (it says so in its log); a frozen leader (SIGSTOP: its port still accepts
//! connections) is not taken for dead, and openraft's own timers replace it. Writes are
//! acknowledged after either. Speed is measured by `storcon-bench failover`, not here.

use cluster_tests::{Cluster, ClusterOptions, NodeRegisterRequest, deadline};

const DETECTED: &str = "leader's address refuses connections; starting an election";

fn detections(cluster: &Cluster, ids: &[u64], from: &[(u64, usize)]) -> Vec<u64> {
    ids.iter()
        .copied()
        .filter(|id| {
            let log = cluster.log_since_last_start(*id);
            let start = from
                .iter()
                .find(|(i, _)| i == id)
                .map_or(0, |(_, at)| *at)
                .min(log.len());
            log.get(start..).is_some_and(|l| l.contains(DETECTED))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_leader() {
    let (cluster, first) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("a formed cluster");
    cluster
        .register(first, &NodeRegisterRequest::fake(1))
        .await
        .expect("a write");

    // SIGKILL: a survivor detects the closed port and starts the election.
    cluster.kill(first);
    let second = cluster
        .wait_for_new_leader(first, deadline::ELECTION)
        .await
        .expect("a new leader");
    let survivors = cluster.live_ids();
    let detected = detections(&cluster, &survivors, &[]);
    assert!(
        !detected.is_empty(),
        "no survivor of {survivors:?} started an election on the refused connect"
    );
    let via = cluster.live_other_than(second);
    cluster
        .register(via, &NodeRegisterRequest::fake(2))
        .await
        .expect("a write after the kill");

    // SIGSTOP: the port still accepts connections, so no detection; the timers elect.
    cluster.restart(first).expect("restart");
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("converged");
    let leader = cluster
        .wait_for_leader(deadline::ELECTION)
        .await
        .expect("leader");
    let ids = cluster.live_ids();
    let offsets: Vec<(u64, usize)> = ids
        .iter()
        .map(|id| (*id, cluster.log_since_last_start(*id).len()))
        .collect();
    cluster.pause(leader).expect("SIGSTOP the leader");
    let replaced = cluster
        .wait_for_new_leader(leader, deadline::ELECTION)
        .await;
    let others: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    let detected = detections(&cluster, &others, &offsets);
    let write = match &replaced {
        Ok(new) => cluster.register(*new, &NodeRegisterRequest::fake(3)).await,
        Err(_) => Ok(Default::default()),
    };
    cluster.resume(leader).expect("SIGCONT");
    replaced.expect("the frozen leader is replaced by the timers");
    write.expect("a write after the freeze");
    assert!(
        detected.is_empty(),
        "{detected:?} took a frozen leader for dead"
    );
    cluster.check_no_crashes().expect("no replica crashed");
}
