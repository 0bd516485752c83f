//! Registering pageservers through a follower: the follower forwards to the leader, the write
//! reaches every replica's applied state, re-registering identically is a no-op and a conflicting
//! re-registration is refused with 409.

use cluster_tests::checks::{check_nodes_everywhere, node_list};
use cluster_tests::{Cluster, ClusterOptions, NodeRegisterRequest, ReadMode, deadline, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_via_follower() {
    let (cluster, leader) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("a formed cluster");
    let follower = cluster.live_other_than(leader);

    // Probes: every replica is up, a member, and ready once it has applied the leader's commit.
    cluster
        .wait_ready(deadline::CONVERGE)
        .await
        .expect("every replica becomes ready");
    for id in cluster.ids() {
        let client = cluster.client(id);
        client.status().await.expect("/status answers 200 null");
        assert_eq!(
            client.probe("/live").await.expect("/live answers"),
            200,
            "replica {id}"
        );
    }

    // Cluster status: every replica answers for itself and knows all members and the leader.
    for id in cluster.ids() {
        let status = cluster.status_of(id).await.expect("cluster status");
        assert_eq!(status.node_id, id);
        assert_eq!(status.leader_id, Some(leader), "replica {id}: {status:?}");
        let mut members: Vec<(u64, String)> = status
            .members
            .iter()
            .map(|m| (m.id, m.addr.clone()))
            .collect();
        members.sort();
        let expected: Vec<(u64, String)> = cluster
            .ids()
            .into_iter()
            .map(|m| (m, cluster.addr(m).to_string()))
            .collect();
        assert_eq!(members, expected, "replica {id}: {status:?}");
        if id == leader {
            let me = status
                .members
                .iter()
                .find(|m| m.id == id)
                .expect("leader lists itself");
            assert_eq!(me.role, "leader", "{status:?}");
        }
    }

    // Every replica learns the leader's URL. A new leader publishes it with its first log entry
    // of the term, so right after the election a replica may still answer `null`.
    let leader_url = format!("http://{}/", cluster.addr(leader));
    for id in cluster.ids() {
        let client = cluster.client(id);
        let info = wait_until(
            &format!("replica {id} to name the leader"),
            deadline::CONVERGE,
            async || {
                let info = client.leader(ReadMode::Forwarded).await?;
                info.ok_or_else(|| anyhow::anyhow!("GET /control/v1/leader answers null"))
            },
        )
        .await
        .expect("GET /control/v1/leader names a leader");
        assert_eq!(info.address, leader_url, "replica {id}");
        assert!(
            info.started_at.contains('T'),
            "started_at is RFC 3339: {info:?}"
        );
    }

    // Register through the follower.
    let nodes: Vec<NodeRegisterRequest> = (1..=6).map(NodeRegisterRequest::fake).collect();
    for node in &nodes {
        cluster
            .register(follower, node)
            .await
            .expect("registering via the follower");
    }

    // Every replica holds every node, forwarded and in its own applied state.
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge after writes");
    check_nodes_everywhere(&cluster, &nodes)
        .await
        .expect("every replica lists the nodes");

    // Identical re-registration is a no-op, through either replica.
    for via in [follower, leader] {
        cluster
            .client(via)
            .register_node(&nodes[0])
            .await
            .unwrap_or_else(|e| panic!("identical re-register via {via} must succeed: {e}"));
    }

    // Conflicting re-registrations are refused with 409 and a message.
    let conflicts = [
        (
            "http port",
            NodeRegisterRequest {
                listen_http_port: 9,
                ..nodes[1].clone()
            },
        ),
        (
            "http addr",
            NodeRegisterRequest {
                listen_http_addr: "127.0.0.2".into(),
                ..nodes[1].clone()
            },
        ),
        (
            "pg port",
            NodeRegisterRequest {
                listen_pg_port: 9,
                ..nodes[1].clone()
            },
        ),
        (
            "pg addr",
            NodeRegisterRequest {
                listen_pg_addr: "127.0.0.2".into(),
                ..nodes[1].clone()
            },
        ),
        (
            "AZ",
            NodeRegisterRequest {
                availability_zone_id: "az-other".into(),
                ..nodes[1].clone()
            },
        ),
    ];
    for (what, conflicting) in &conflicts {
        for via in [follower, leader] {
            let err = cluster
                .client(via)
                .register_node(conflicting)
                .await
                .expect_err("a conflicting re-register must fail");
            assert_eq!(err.status(), Some(409), "different {what} via {via}: {err}");
            let msg = err
                .msg()
                .unwrap_or_else(|| panic!("409 without a msg body: {err}"));
            assert!(!msg.is_empty(), "empty msg for a different {what}");
        }
    }

    // Nothing changed: same nodes, same addresses, everywhere.
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge");
    check_nodes_everywhere(&cluster, &nodes)
        .await
        .expect("conflicts changed nothing");
    let local = node_list(&cluster, follower, ReadMode::Local)
        .await
        .expect("local list");
    assert_eq!(local.len(), nodes.len());
    cluster.check_no_crashes().expect("no replica crashed");
}
