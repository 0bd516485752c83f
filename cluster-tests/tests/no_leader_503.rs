//! A replica that lost its majority answers forwarded requests with 503 and a message, while its
//! local endpoints (`/status`, `/live`, `/control/v1/cluster`, local reads) keep working; once a
//! peer returns it serves writes again.

use cluster_tests::checks::{check_nodes_everywhere, check_nodes_on};
use cluster_tests::{Cluster, ClusterOptions, NodeRegisterRequest, ReadMode, deadline, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leader_503() {
    let (cluster, leader) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("a formed cluster");
    let mut registered = vec![NodeRegisterRequest::fake(1)];
    cluster
        .register(leader, &registered[0])
        .await
        .expect("registering via the leader");
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge");

    let survivor = cluster.live_other_than(leader);
    let killed: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != survivor)
        .collect();
    for id in &killed {
        cluster.kill(*id);
    }
    let client = cluster.client(survivor);

    // The survivor notices that it has no leader.
    let status = wait_until(
        "the survivor to report no leader",
        deadline::ELECTION,
        async || {
            let status = client.cluster().await?;
            anyhow::ensure!(
                status.leader_id.is_none(),
                "survivor still names a leader: {status:?}"
            );
            Ok(status)
        },
    )
    .await
    .expect("the survivor reports no leader");
    assert_eq!(status.node_id, survivor);

    // Writes and forwarded reads: 503 with a message.
    let write = NodeRegisterRequest::fake(2);
    for attempt in 0..3 {
        let err = client
            .register_node(&write)
            .await
            .expect_err("no write without a leader");
        assert_eq!(err.status(), Some(503), "write attempt {attempt}: {err}");
        assert!(
            err.msg().is_some_and(|m| !m.is_empty()),
            "503 without a msg: {err}"
        );
    }
    let err = client
        .list_nodes(ReadMode::Forwarded)
        .await
        .expect_err("no forwarded read");
    assert_eq!(err.status(), Some(503), "forwarded read: {err}");
    assert!(
        err.msg().is_some_and(|m| !m.is_empty()),
        "503 without a msg: {err}"
    );

    // Local endpoints keep answering.
    client.status().await.expect("/status answers 200 null");
    assert_eq!(
        client.probe("/live").await.expect("/live answers"),
        200,
        "/live of a member"
    );
    assert_eq!(
        client.probe("/ready").await.expect("/ready answers"),
        503,
        "/ready without leader"
    );
    let status = client
        .cluster()
        .await
        .expect("/control/v1/cluster answers locally");
    assert_eq!((status.node_id, status.leader_id), (survivor, None));
    assert_eq!(status.members.len(), 3, "{status:?}");
    check_nodes_on(&cluster, survivor, ReadMode::Local, &registered)
        .await
        .expect("local reads still answer from applied state");

    // A returning peer restores the majority; writes through the survivor work again.
    cluster.restart(killed[0]).expect("restarting a peer");
    cluster
        .wait_for_leader(deadline::ELECTION)
        .await
        .expect("a leader with two replicas");
    cluster
        .register(survivor, &write)
        .await
        .expect("writing after the majority returned");
    registered.push(write);
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("the two replicas converge");
    check_nodes_everywhere(&cluster, &registered)
        .await
        .expect("both replicas hold every write");
    cluster.check_no_crashes().expect("no replica crashed");
}
