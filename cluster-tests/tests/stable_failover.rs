//! Failover of a quiet cluster: SIGKILL the leader while every shard is where it belongs. The
//! new leader starts its services, heartbeats and lists every pageserver (the simulators see its
//! term), finds nothing to do, and makes ZERO `location_config` calls; intents are unchanged.

use std::time::Instant;

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{tenant_create_body, tenant_id};
use cluster_tests::{ClusterOptions, ControllerOptions, StorageApi, deadline, wait_until};
use serde_json::Value;

const TAG: u32 = 0x57ab;
/// The new leader logs this once its startup scan, scheduling and reconcile queueing are done.
const STARTUP_DONE: &str = "startup reconcile done";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stable_failover() {
    // The test waits for an info line of the controller: keep it whatever RUST_LOG says.
    let defaults = ClusterOptions::default();
    let opts = ClusterOptions {
        rust_log: format!("{},storcon::controller=info", defaults.rust_log),
        ..defaults
    };
    let ControllerFixture {
        sims,
        cluster,
        leader: old_leader,
        follower: _,
    } = ControllerFixture::start_with(
        &[(1, "az-a"), (2, "az-a"), (3, "az-b")],
        SETTLE_DEADLINE,
        opts,
        ControllerOptions::test_defaults(),
    )
    .await
    .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(old_leader));
    let tenants: Vec<String> = (1..=3).map(|n| tenant_id(TAG, n)).collect();
    for (tenant, count) in tenants.iter().zip([4, 4, 0]) {
        api.create_tenant(&tenant_create_body(tenant, count, 1))
            .await
            .expect("create");
    }
    let before = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("tenants settle");
    assert_eq!(
        api.reconcile_all().await.expect("reconcile_all"),
        0,
        "quiet"
    );
    let mut described_before = Vec::new();
    for tenant in &tenants {
        described_before.push(
            api.describe_tenant(tenant)
                .await
                .expect("describe")
                .durable(),
        );
    }
    let old_term = cluster.status_of(old_leader).await.expect("status").term;
    let calls_before = sims.location_config_calls().expect("histories");
    let history_before: Vec<usize> = sims
        .ids()
        .iter()
        .map(|id| sims.history(*id).expect("history").len())
        .collect();
    let startups_before: Vec<(u64, usize)> = cluster
        .ids()
        .into_iter()
        .map(|id| {
            (
                id,
                cluster
                    .log_since_last_start(id)
                    .matches(STARTUP_DONE)
                    .count(),
            )
        })
        .collect();

    // SIGKILL the leader of the quiet cluster.
    cluster.kill(old_leader);
    let killed = Instant::now();
    let new_leader = cluster
        .wait_for_new_leader(old_leader, deadline::ELECTION)
        .await
        .expect("a new leader");
    let new_term = cluster.status_of(new_leader).await.expect("status").term;
    assert!(new_term > old_term);
    let api = StorageApi::new(cluster.client(new_leader));

    // Wait for the new leader's services: ready, every node heard from and Active, the
    // simulators fenced to the new term, the startup pass done, nothing left to reconcile.
    wait_until(
        "the new leader to be ready",
        deadline::ELECTION,
        async || {
            let code = cluster.client(new_leader).probe("/ready").await?;
            anyhow::ensure!(code == 200, "/ready: HTTP {code}");
            Ok(())
        },
    )
    .await
    .expect("ready");
    sims.wait_active(&api, &sims.ids(), SETTLE_DEADLINE)
        .await
        .expect("every node Active under the new leader");
    for id in sims.ids() {
        let state = sims.state(id).await.expect("sim state");
        assert_eq!(
            state["max_term"],
            Value::from(new_term),
            "sim {id} heard from the new leader"
        );
    }
    let before_count = startups_before
        .iter()
        .find(|(id, _)| *id == new_leader)
        .map_or(0, |(_, n)| *n);
    wait_until(
        "the new leader's startup pass",
        SETTLE_DEADLINE,
        async || {
            let log = cluster.log_since_last_start(new_leader);
            let n = log.matches(STARTUP_DONE).count();
            anyhow::ensure!(n > before_count, "{n} startup passes logged");
            Ok(())
        },
    )
    .await
    .expect("startup pass done");
    let startup = killed.elapsed();
    let after = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("still settled under the new leader");
    assert_eq!(after, before, "no attachment moved");
    assert_eq!(
        api.reconcile_all().await.expect("reconcile_all"),
        0,
        "the new leader finds nothing to reconcile"
    );

    // Zero location_config calls, nothing else recorded either.
    let calls_after = sims.location_config_calls().expect("histories");
    assert_eq!(
        calls_after, calls_before,
        "location_config calls during a quiet failover"
    );
    let history_after: Vec<usize> = sims
        .ids()
        .iter()
        .map(|id| sims.history(*id).expect("history").len())
        .collect();
    assert_eq!(
        history_after, history_before,
        "nothing recorded by any simulator"
    );
    for (tenant, before) in tenants.iter().zip(&described_before) {
        let now = api
            .describe_tenant(tenant)
            .await
            .expect("describe")
            .durable();
        assert_eq!(&now, before, "{tenant}: intent unchanged");
    }
    // A follower forwards to the new leader and sees the same.
    let via = StorageApi::new(cluster.client(cluster.live_other_than(new_leader)));
    via.consistency_check()
        .await
        .expect("consistency via a follower");
    eprintln!(
        "stable_failover: new leader {new_leader} (term {new_term}) done with startup {startup:?} \
         after the SIGKILL; {calls_after} location_config calls before and after"
    );
    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}
