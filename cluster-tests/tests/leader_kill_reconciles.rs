//! SIGKILL of the leader while reconciles run, twice:
//!
//! 1. ten 4-shard tenants are created concurrently through a follower; the leader is killed as
//!    soon as the first `location_config` reaches a simulator;
//! 2. an operator marks the busiest pageserver Offline (its attachments fail over: new
//!    generations, attach calls in flight) and the leader is killed right after the answer.
//!
//! Each time the new leader finishes the work: every shard ends attached where its intent says,
//! in the newest generation, with its secondary, and consistency_check passes. Over the whole
//! run the simulators' histories show no shard accepted attached in the same generation on two
//! nodes, per node per shard generations never went back, terms never went back, and validate
//! never approved a superseded generation. Finally every generation any simulator ever held is
//! validated: only each shard's current one is valid.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{Attachment, SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{tenant_create_body, tenant_id};
use cluster_tests::{
    Cluster, ClusterOptions, ControllerOptions, Sims, StorageApi, deadline, wait_until,
};
use serde_json::json;

const TAG: u32 = 0x1d11;
const TENANTS: u32 = 10;
/// Creates are retried through the failover (idempotent for the same shard count).
const CREATE_DEADLINE: Duration = Duration::from_secs(90);

/// Waits until some simulator records a `location_config` beyond the first `calls`.
async fn wait_for_calls_beyond(sims: &Sims, calls: usize) {
    wait_until(
        "a location_config call to reach a simulator",
        SETTLE_DEADLINE,
        async || {
            let now = sims.location_config_calls()?;
            anyhow::ensure!(now > calls, "{now} calls");
            Ok(())
        },
    )
    .await
    .expect("reconciles started");
}

/// Waits for a leader other than the killed `leader`; returns its term.
async fn new_leader_term(cluster: &Cluster, leader: u64) -> u64 {
    let new_leader = cluster
        .wait_for_new_leader(leader, deadline::ELECTION)
        .await
        .expect("a new leader");
    cluster.status_of(new_leader).await.expect("status").term
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_kill_reconciles() {
    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower,
    } = ControllerFixture::start_with(
        &[(1, "az-a"), (2, "az-a"), (3, "az-b")],
        SETTLE_DEADLINE,
        ClusterOptions::default(),
        // It validates every generation against the placement it read: no optimiser moves
        // (each a new generation) in between.
        ControllerOptions::without_optimiser(),
    )
    .await
    .expect("a formed cluster with Active simulators");
    // Requests go through a replica that is not the one about to be killed.
    let api = StorageApi::new(cluster.client(follower));

    // 1. Ten concurrent creates; SIGKILL the leader once reconciles are running.
    let tenants: Vec<String> = (1..=TENANTS).map(|n| tenant_id(TAG, n)).collect();
    let done = Arc::new(AtomicUsize::new(0));
    let calls_at_start = sims.location_config_calls().expect("histories");
    let creates: Vec<_> = tenants
        .iter()
        .map(|tenant| {
            let api = api.clone();
            let body = tenant_create_body(tenant, 4, 1);
            let done = done.clone();
            tokio::spawn(async move {
                let created = api.create_tenant_with_retry(&body, CREATE_DEADLINE).await;
                done.fetch_add(1, Ordering::SeqCst);
                created
            })
        })
        .collect();
    wait_for_calls_beyond(&sims, calls_at_start).await;
    let finished_at_kill = done.load(Ordering::SeqCst);
    let killed = Instant::now();
    let killed_at = chrono::Utc::now();
    cluster.kill(leader);
    let calls_at_kill = sims.location_config_calls().expect("histories");
    let term = new_leader_term(&cluster, leader).await;
    for (tenant, create) in tenants.iter().zip(creates) {
        let created = create
            .await
            .expect("create task")
            .unwrap_or_else(|e| panic!("{tenant}: {e:#}"));
        assert_eq!(created.shards.len(), 4, "{tenant}: {created:?}");
    }
    let settled = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("the new leader finishes the creates");
    let events = sims.all_history().expect("histories");
    let first_reconcile = history::first_call_in_term(&events, term, killed_at);
    eprintln!(
        "leader_kill_reconciles round 1: killed after {finished_at_kill}/{TENANTS} creates \
         returned and {} location_config calls; settled {:?} after the kill; first accepted \
         call of term {term} {first_reconcile:?} ms after the kill",
        calls_at_kill - calls_at_start,
        killed.elapsed()
    );
    history::ensure_safe(&events).expect("generation safety after round 1");
    let listed = api.list_tenants(None, None).await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|t| t.tenant_id.clone())
            .collect::<Vec<_>>(),
        tenants,
        "every tenant exactly once"
    );

    // Bring the killed replica back so the cluster survives another kill.
    let dead = cluster
        .ids()
        .into_iter()
        .find(|id| !cluster.is_running(*id))
        .expect("the killed replica");
    cluster.restart(dead).expect("restart");
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("three replicas again");
    let leader = cluster.leader_id().await.expect("a leader");
    let api = StorageApi::new(cluster.client(cluster.live_other_than(leader)));

    // 2. Fail the busiest node over and SIGKILL the leader right after it answered.
    let busiest = *sims
        .ids()
        .iter()
        .max_by_key(|n| settled.values().filter(|a| a.node == **n).count())
        .expect("sims");
    let calls_before = sims.location_config_calls().expect("histories");
    api.configure_node(
        busiest,
        &json!({"node_id": busiest, "availability": "Offline"}),
    )
    .await
    .expect("node marked Offline");
    let killed = Instant::now();
    let killed_at = chrono::Utc::now();
    cluster.kill(leader);
    let calls_at_kill = sims.location_config_calls().expect("histories");
    let term = new_leader_term(&cluster, leader).await;
    let after = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("the new leader finishes the failover");
    let events = sims.all_history().expect("histories");
    eprintln!(
        "leader_kill_reconciles round 2: {} location_config calls between the Offline answer \
         and the kill; settled {:?} after the kill; first accepted call of term {term} {:?} ms after the kill",
        calls_at_kill - calls_before,
        killed.elapsed(),
        history::first_call_in_term(&events, term, killed_at)
    );
    // Whatever part of the failover committed before the kill, attachments only moved to
    // newer generations.
    for (shard, old) in &settled {
        let new: Attachment = after[shard];
        if new.node != old.node {
            assert!(
                new.generation > old.generation,
                "{shard}: {old:?} -> {new:?}"
            );
        } else {
            assert!(
                new.generation >= old.generation,
                "{shard}: {old:?} -> {new:?}"
            );
        }
    }
    sims.wait_active(&api, &sims.ids(), SETTLE_DEADLINE)
        .await
        .expect("every node Active under the last leader");

    // The whole run's histories.
    let events = sims.all_history().expect("histories");
    history::ensure_safe(&events).expect("generation safety");
    for id in sims.ids() {
        let state = sims.state(id).await.expect("sim state");
        assert_eq!(
            state["max_term"],
            json!(term),
            "sim {id} fenced to the last term"
        );
    }

    // Validate every generation ever held: only the current one of each shard is valid.
    let generations = history::attach_generations(&events);
    assert_eq!(generations.len(), after.len(), "every shard was attached");
    let mut rounds: Vec<Vec<(String, u32)>> = Vec::new();
    for (shard, held) in &generations {
        for (k, generation) in held.keys().enumerate() {
            if rounds.len() <= k {
                rounds.push(Vec::new());
            }
            rounds[k].push((shard.clone(), *generation));
        }
    }
    let mut checked = 0;
    for round in &rounds {
        let answer: BTreeMap<String, bool> = api.validate(round).await.expect("validate");
        for (shard, generation) in round {
            let current = after[shard].generation == *generation;
            assert_eq!(
                answer.get(shard),
                Some(&current),
                "{shard} generation {generation} (current {})",
                after[shard].generation
            );
            checked += 1;
        }
    }
    eprintln!(
        "leader_kill_reconciles: validated {checked} generations of {} shards",
        generations.len()
    );
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}
