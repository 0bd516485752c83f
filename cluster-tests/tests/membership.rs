//! Membership changes and the planned leader handover (issue 12, items 5 and 7), against live
//! clusters: `POST /control/v1/members`, `DELETE /control/v1/members/{id}`,
//! `PUT /control/v1/step_down`, join mode for new replicas, and removed replicas refused.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster_tests::client::RawResponse;
use cluster_tests::{
    Cluster, ClusterOptions, ClusterStatus, NodeRegisterRequest, ReadMode, deadline, free_port,
    wait_until,
};
use reqwest::Method;

async fn send(
    cluster: &Cluster,
    via: u64,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> RawResponse {
    let body = body.map(|b| ("application/json", b.to_string()));
    cluster
        .client(via)
        .raw(method, path, body, &[])
        .await
        .unwrap_or_else(|e| panic!("{path} via {via}: {e}"))
}

async fn add_member(cluster: &Cluster, via: u64, id: u64, addr: &str) -> RawResponse {
    send(
        cluster,
        via,
        Method::POST,
        "/control/v1/members",
        Some(serde_json::json!({"id": id, "addr": addr})),
    )
    .await
}

async fn remove_member(cluster: &Cluster, via: u64, id: u64) -> RawResponse {
    send(
        cluster,
        via,
        Method::DELETE,
        &format!("/control/v1/members/{id}"),
        None,
    )
    .await
}

fn cluster_body(raw: &RawResponse) -> ClusterStatus {
    assert_eq!(raw.status, 200, "{}", raw.body);
    serde_json::from_str(&raw.body).unwrap_or_else(|e| panic!("{e}: {}", raw.body))
}

/// Registers fake pageservers one after another through the given replicas in turn (a refused
/// or unanswered attempt moves on to the next), until told to stop; returns the ids whose
/// registration was acknowledged (200).
struct WriteLoad {
    stop: Arc<AtomicBool>,
    acked: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<u64>>,
}

impl WriteLoad {
    fn start(clients: Vec<cluster_tests::Client>, first_id: u64) -> WriteLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn({
            let stop = stop.clone();
            let count = count.clone();
            async move {
                let mut acked = Vec::new();
                let mut id = first_id;
                let mut attempt = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    attempt += 1;
                    let client = &clients[attempt % clients.len()];
                    match client.register_node(&NodeRegisterRequest::fake(id)).await {
                        Ok(()) => {
                            acked.push(id);
                            count.fetch_add(1, Ordering::SeqCst);
                            id += 1;
                        }
                        // Not acknowledged: retried under the same id (registration is
                        // idempotent).
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                acked
            }
        });
        WriteLoad {
            stop,
            acked: count,
            task,
        }
    }

    /// Waits until `more` further writes were acknowledged.
    async fn wait_for_more(&self, more: usize) {
        let from = self.acked.load(Ordering::SeqCst);
        wait_until("more acknowledged writes", deadline::WRITE, async || {
            let now = self.acked.load(Ordering::SeqCst);
            anyhow::ensure!(now >= from + more, "{} more so far", now - from);
            Ok(())
        })
        .await
        .expect("the load keeps writing");
    }

    async fn finish(self) -> Vec<u64> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("write load task")
    }
}

async fn assert_all_present(cluster: &Cluster, via: u64, acked: &[u64]) {
    let listed: BTreeSet<u64> = wait_until("the node list", deadline::WRITE, async || {
        Ok(cluster.client(via).list_nodes(ReadMode::Forwarded).await?)
    })
    .await
    .expect("node list")
    .into_iter()
    .map(|n| n.id)
    .collect();
    let missing: Vec<u64> = acked
        .iter()
        .filter(|id| !listed.contains(id))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged registrations lost: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_a_fourth_replica_and_remove_one_under_write_load() {
    let (mut cluster, leader) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("formed");
    let load = WriteLoad::start(
        cluster.ids().iter().map(|id| cluster.client(*id)).collect(),
        100,
    );
    load.wait_for_more(3).await;
    let addr4 = cluster.start_joining(4).expect("replica 4 starts");
    let follower = cluster.live_other_than(leader);
    // Through a follower: the add is forwarded to the leader.
    let added = cluster_body(&add_member(&cluster, follower, 4, &addr4.to_string()).await);
    assert_eq!(added.voters(), BTreeSet::from([1, 2, 3, 4]), "{added:?}");
    let m4 = added.members.iter().find(|m| m.id == 4).expect("4 listed");
    assert_eq!(m4.addr, addr4.to_string());
    // Adding it again: already a member.
    let again = add_member(&cluster, leader, 4, &addr4.to_string()).await;
    assert_eq!(again.status, 409, "{}", again.body);
    // Remove a follower other than the one we talk through.
    let gone = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != follower && *id != 4)
        .expect("a third");
    let removed = cluster_body(&remove_member(&cluster, follower, gone).await);
    let left: BTreeSet<u64> = [1, 2, 3, 4].into_iter().filter(|id| *id != gone).collect();
    assert_eq!(removed.voters(), left, "{removed:?}");
    let unknown = remove_member(&cluster, leader, gone).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    // The removed replica, still running, applied its own removal and says so.
    wait_until(
        "the removed replica reports its removal",
        deadline::WRITE,
        async || {
            let raw = cluster
                .client(gone)
                .raw(Method::GET, "/status", None, &[])
                .await?;
            anyhow::ensure!(
                raw.body.contains("removed from the cluster at log index"),
                "not yet: {}",
                raw.body
            );
            Ok(())
        },
    )
    .await
    .expect("/status of the removed replica");
    cluster.kill(gone);
    // Some more writes with the new membership, then stop the load.
    load.wait_for_more(5).await;
    let acked = load.finish().await;
    assert_all_present(&cluster, 4, &acked).await;
    // Replica 4 holds them too, in its own applied state.
    wait_until(
        "replica 4 applied every write",
        deadline::CONVERGE,
        async || {
            let local: BTreeSet<u64> = cluster
                .client(4)
                .list_nodes(ReadMode::Local)
                .await?
                .into_iter()
                .map(|n| n.id)
                .collect();
            anyhow::ensure!(acked.iter().all(|id| local.contains(id)), "not yet");
            Ok(())
        },
    )
    .await
    .expect("replica 4 has every acknowledged write");
    println!("acknowledged writes during add and remove: {}", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_a_wiped_replica_under_a_new_id() {
    let (mut cluster, leader) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("formed");
    let lost = cluster.live_other_than(leader);
    for id in 1..=3 {
        cluster
            .register(leader, &NodeRegisterRequest::fake(id))
            .await
            .expect("register");
    }
    cluster.kill(lost);
    cluster.wipe(lost).expect("wipe");
    let removed = cluster_body(&remove_member(&cluster, leader, lost).await);
    assert!(!removed.voters().contains(&lost));
    // The wiped id restarted as-is is still refused (formation's wiped-disk rule).
    cluster.restart(lost).expect("restart");
    let exit = cluster
        .wait_exit(lost, deadline::EXIT)
        .await
        .expect("exits");
    assert_eq!(exit.code(), Some(3), "refused, not joined");
    // The replacement: a new id, an empty disk, join mode.
    let addr = cluster.start_joining(7).expect("replica 7 starts");
    let added = cluster_body(&add_member(&cluster, leader, 7, &addr.to_string()).await);
    assert!(added.voters().contains(&7), "{added:?}");
    // The cluster now needs 7 for a quorum: with the other old replica down it still serves.
    let other = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != lost && *id != 7)
        .expect("other");
    cluster.kill(other);
    cluster
        .register(leader, &NodeRegisterRequest::fake(4))
        .await
        .expect("write with 7 in the quorum");
    let nodes = cluster
        .client(7)
        .list_nodes(ReadMode::Forwarded)
        .await
        .expect("nodes via 7");
    assert_eq!(nodes.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_replicas_form_lose_two_and_keep_serving() {
    let (cluster, leader) = Cluster::start_formed(ClusterOptions {
        replicas: 5,
        ..ClusterOptions::default()
    })
    .await
    .expect("five replicas form");
    let status = cluster.status_of(leader).await.expect("status");
    assert_eq!(status.voters(), BTreeSet::from([1, 2, 3, 4, 5]));
    cluster
        .register(leader, &NodeRegisterRequest::fake(1))
        .await
        .expect("write");
    let other = cluster.live_other_than(leader);
    cluster.kill(leader);
    cluster.kill(other);
    let new_leader = cluster
        .wait_for_new_leader(leader, deadline::ELECTION)
        .await
        .expect("new leader");
    assert!(new_leader != other);
    let via = cluster.live_other_than(new_leader);
    cluster
        .register(via, &NodeRegisterRequest::fake(2))
        .await
        .expect("write with three of five");
    let nodes = cluster
        .client(via)
        .list_nodes(ReadMode::Forwarded)
        .await
        .expect("nodes");
    assert_eq!(nodes.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_change_is_refused_while_one_is_in_flight() {
    let (cluster, leader) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("formed");
    let cluster = Arc::new(cluster);
    // Nothing listens there: the learner never catches up, so the add stays in flight.
    let nowhere = format!("127.0.0.1:{}", free_port());
    // The add waits up to 30 s for the learner: longer than the harness clients' timeout.
    let patient = cluster_tests::Client::new(
        cluster_tests::client::http_client(Duration::from_secs(60)),
        cluster.url(leader),
    );
    let first = tokio::spawn({
        let nowhere = nowhere.clone();
        async move {
            let body = serde_json::json!({"id": 9, "addr": nowhere}).to_string();
            patient
                .raw(
                    Method::POST,
                    "/control/v1/members",
                    Some(("application/json", body)),
                    &[],
                )
                .await
                .expect("the first add answers")
        }
    });
    wait_until("9 listed as a learner", deadline::WRITE, async || {
        let s = cluster.status_of(leader).await?;
        anyhow::ensure!(
            s.members.iter().any(|m| m.id == 9 && m.role == "learner"),
            "not yet: {s:?}"
        );
        Ok(())
    })
    .await
    .expect("learner added");
    let follower = cluster.live_other_than(leader);
    let second = add_member(
        &cluster,
        follower,
        10,
        &format!("127.0.0.1:{}", free_port()),
    )
    .await;
    assert_eq!(second.status, 409, "{}", second.body);
    assert!(second.body.contains("in flight"), "{}", second.body);
    let removal = remove_member(&cluster, leader, follower).await;
    assert_eq!(removal.status, 409, "{}", removal.body);
    let step = send(&cluster, leader, Method::PUT, "/control/v1/step_down", None).await;
    assert_eq!(step.status, 409, "{}", step.body);
    let first = first.await.expect("first add");
    assert_eq!(first.status, 504, "{}", first.body);
    assert!(first.body.contains("stays a learner"), "{}", first.body);
    // Bad input is refused before anything changes.
    for body in [
        serde_json::json!({"id": 11}),
        serde_json::json!({"id": 11, "addr": "x", "more": 1}),
        serde_json::json!({"id": 11, "addr": "no-port"}),
    ] {
        let bad = send(
            &cluster,
            leader,
            Method::POST,
            "/control/v1/members",
            Some(body.clone()),
        )
        .await;
        assert_eq!(bad.status, 400, "{body}: {}", bad.body);
    }
    // The learner can be removed; its id is then never reused.
    let removed = cluster_body(&remove_member(&cluster, leader, 9).await);
    assert!(removed.members.iter().all(|m| m.id != 9));
    let again = add_member(&cluster, leader, 9, &nowhere).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("removed"), "{}", again.body);
    let last = remove_member(&cluster, leader, 77).await;
    assert_eq!(last.status, 404, "{}", last.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_replica_restarted_is_refused_and_says_so() {
    let (cluster, leader) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("formed");
    let gone = cluster.live_other_than(leader);
    cluster.kill(gone);
    cluster_body(&remove_member(&cluster, leader, gone).await);
    let before = cluster.status_of(leader).await.expect("status");
    cluster.restart(gone).expect("restart the removed replica");
    let status = wait_until(
        "the removed replica reports its removal",
        deadline::ELECTION,
        async || {
            let raw = cluster
                .client(gone)
                .raw(Method::GET, "/status", None, &[])
                .await?;
            let v: serde_json::Value = serde_json::from_str(&raw.body)?;
            anyhow::ensure!(
                v["removed"] == serde_json::json!(true),
                "not yet: {}",
                raw.body
            );
            Ok(v)
        },
    )
    .await
    .expect("/status says removed");
    let reason = status["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("not a member") && reason.contains("removed"),
        "{reason}"
    );
    assert!(
        cluster
            .log_since_last_start(gone)
            .contains("REFUSED BY THE CLUSTER")
    );
    let live = cluster.client(gone).probe("/live").await.expect("/live");
    assert_eq!(live, 503);
    // Let it campaign for a while: no leader change, no term change on the members.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        for id in cluster.ids().into_iter().filter(|id| *id != gone) {
            let s = cluster.status_of(id).await.expect("member status");
            assert_eq!(s.leader_id, Some(leader), "replica {id}: {s:?}");
            assert_eq!(s.term, before.term, "replica {id}: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster
        .register(leader, &NodeRegisterRequest::fake(1))
        .await
        .expect("still serving");
}

#[derive(serde::Deserialize, Debug)]
struct StepDown {
    previous_leader: u64,
    new_leader: u64,
    term: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_down_hands_leadership_to_a_caught_up_voter() {
    let (cluster, mut leader) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("formed");
    cluster
        .register(leader, &NodeRegisterRequest::fake(1))
        .await
        .expect("write");
    // Writes through every replica all along: none acknowledged may be lost in a handover.
    let load = WriteLoad::start(
        cluster.ids().iter().map(|id| cluster.client(*id)).collect(),
        1000,
    );
    let mut took = Vec::new();
    for round in 0..5u64 {
        load.wait_for_more(2).await;
        let before = cluster.status_of(leader).await.expect("status");
        // Ask through a follower (forwarded), naming the successor on odd rounds.
        let via = cluster.live_other_than(leader);
        let body = (round % 2 == 1).then(|| serde_json::json!({"to": via}));
        let started = Instant::now();
        let raw = send(
            &cluster,
            via,
            Method::PUT,
            "/control/v1/step_down",
            body.clone(),
        )
        .await;
        took.push(started.elapsed());
        assert_eq!(raw.status, 200, "round {round}: {}", raw.body);
        let moved: StepDown = serde_json::from_str(&raw.body).expect("step_down body");
        assert_eq!(moved.previous_leader, leader);
        assert_ne!(moved.new_leader, leader);
        if body.is_some() {
            assert_eq!(moved.new_leader, via, "the named successor leads");
        }
        assert!(
            moved.term > before.term,
            "{moved:?} after term {}",
            before.term
        );
        let log = cluster.log_since_last_start(leader);
        assert!(
            log.contains("handing over leadership: stopping leader services"),
            "round {round}"
        );
        assert!(
            log.contains("leadership lost or handed over; stopping controller services"),
            "round {round}"
        );
        let new_leader = cluster
            .wait_for_new_leader(leader, deadline::ELECTION)
            .await
            .expect("new leader");
        assert_eq!(new_leader, moved.new_leader);
        // The new leader records itself under its term before its services start: the record
        // is the failover's fence.
        wait_until("the new leader's record", deadline::WRITE, async || {
            let rec = cluster.client(leader).leader(ReadMode::Forwarded).await?;
            let addr = cluster.addr(new_leader).to_string();
            anyhow::ensure!(
                rec.as_ref().is_some_and(|r| r.address.contains(&addr)),
                "not yet: {rec:?}"
            );
            Ok(())
        })
        .await
        .expect("leader record moved");
        // A write through the old leader reaches the new one.
        cluster
            .register(leader, &NodeRegisterRequest::fake(10 + round))
            .await
            .expect("write after handover");
        leader = new_leader;
    }
    // A named successor that is not a voter is refused.
    let refused = send(
        &cluster,
        leader,
        Method::PUT,
        "/control/v1/step_down",
        Some(serde_json::json!({"to": 42})),
    )
    .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    load.wait_for_more(2).await;
    let acked = load.finish().await;
    assert_all_present(&cluster, leader, &acked).await;
    println!("acknowledged writes across the handovers: {}", acked.len());
    let mut sorted = took.clone();
    sorted.sort();
    println!(
        "step_down handover times: {took:?}; median {:?}",
        sorted[sorted.len() / 2]
    );
    let nodes = cluster
        .client(leader)
        .list_nodes(ReadMode::Forwarded)
        .await
        .expect("nodes");
    assert_eq!(nodes.len(), 6 + acked.len());
}

/// The handover fences the pageservers as a failover does: after step_down answers, no
/// pageserver hears the old term again, every one moves to the new term, and generations stay
/// safe through a failover the new leader then runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_down_fences_pageserver_calls_like_a_failover() {
    use cluster_tests::fixture::ControllerFixture;
    use cluster_tests::history;
    use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
    use cluster_tests::storage_api::{tenant_create_body, tenant_id};
    use cluster_tests::{ControllerOptions, StorageApi};

    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower,
    } = ControllerFixture::start_with(
        &[(1, "az-a"), (2, "az-a"), (3, "az-b")],
        SETTLE_DEADLINE,
        ClusterOptions::default(),
        ControllerOptions {
            max_optimisations_per_pass: Some(0),
            ..ControllerOptions::test_defaults()
        },
    )
    .await
    .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let tenants: Vec<String> = (1..=3).map(|n| tenant_id(0x5d0e, n)).collect();
    for t in &tenants {
        api.create_tenant_with_retry(&tenant_create_body(t, 2, 1), deadline::WRITE)
            .await
            .expect("create");
    }
    let settled = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("settled");
    let old_term = cluster.status_of(leader).await.expect("status").term;
    let raw = send(
        &cluster,
        follower,
        Method::PUT,
        "/control/v1/step_down",
        None,
    )
    .await;
    let answered_at = chrono::Utc::now();
    assert_eq!(raw.status, 200, "{}", raw.body);
    let moved: StepDown = serde_json::from_str(&raw.body).expect("body");
    assert_eq!(moved.previous_leader, leader);
    // The new leader fails the busiest node over: new generations under the new term.
    let busiest = *sims
        .ids()
        .iter()
        .max_by_key(|n| settled.values().filter(|a| a.node == **n).count())
        .expect("sims");
    let api = StorageApi::new(cluster.client(leader));
    // Through the old leader (forwarded); 503 while the new leader's services start.
    wait_until("the node marked Offline", deadline::WRITE, async || {
        Ok(api
            .configure_node(
                busiest,
                &serde_json::json!({"node_id": busiest, "availability": "Offline"}),
            )
            .await?)
    })
    .await
    .expect("Offline through the old leader, forwarded");
    let after = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("failover settled");
    for (shard, old) in &settled {
        let new = after[shard];
        assert!(
            new.generation >= old.generation,
            "{shard}: {old:?} -> {new:?}"
        );
        if old.node == busiest {
            assert!(
                new.node != busiest && new.generation > old.generation,
                "{shard}: {old:?} -> {new:?}"
            );
        }
    }
    for id in sims.ids() {
        wait_until(
            "the simulator hears the new term",
            deadline::WRITE,
            async || {
                let state = sims.state(id).await?;
                anyhow::ensure!(
                    state["max_term"] == serde_json::json!(moved.term),
                    "sim {id}: {}",
                    state["max_term"]
                );
                Ok(())
            },
        )
        .await
        .expect("fenced to the new term");
    }
    let events = sims.all_history().expect("histories");
    history::ensure_safe(&events).expect("generation safety across the handover");
    let late: Vec<_> = events
        .iter()
        .filter(|e| e.term == Some(old_term))
        .filter(|e| {
            chrono::DateTime::parse_from_rfc3339(&e.ts)
                .is_ok_and(|ts| ts.with_timezone(&chrono::Utc) > answered_at)
        })
        .collect();
    assert!(
        late.is_empty(),
        "the old leader reached pageservers after handing over: {late:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.term == Some(old_term) && e.accepted),
        "the old leader did talk to the pageservers before (the check above can fail)"
    );
}

/// A replica that was down while a member was added, and whose config does not list that
/// member, still catches up once the new member leads: the leader's entries carry the
/// membership that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_down_during_an_add_follows_the_new_member_as_leader() {
    let (mut cluster, leader) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("formed");
    let down = cluster.live_other_than(leader);
    cluster.kill(down);
    let addr = cluster.start_joining(4).expect("replica 4 starts");
    cluster_body(&add_member(&cluster, leader, 4, &addr.to_string()).await);
    let raw = send(
        &cluster,
        leader,
        Method::PUT,
        "/control/v1/step_down",
        Some(serde_json::json!({"to": 4})),
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.body);
    cluster
        .register(4, &NodeRegisterRequest::fake(1))
        .await
        .expect("write under leader 4");
    // Its config lists 1, 2 and 3 only.
    cluster.restart(down).expect("restart");
    wait_until(
        "the restarted replica follows 4",
        deadline::CONVERGE,
        async || {
            let s = cluster.status_of(down).await?;
            anyhow::ensure!(s.leader_id == Some(4), "not yet: {s:?}");
            let nodes = cluster.client(down).list_nodes(ReadMode::Local).await?;
            anyhow::ensure!(nodes.len() == 1, "not yet: {} nodes", nodes.len());
            Ok(())
        },
    )
    .await
    .expect("caught up under the new member's leadership");
}
