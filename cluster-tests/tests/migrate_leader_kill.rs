//! SIGKILL of the leader at each phase of a prewarmed migration (issue 11, item 1): before the
//! warm-up, before the cut-over, and after each live-migration step (origin stale, destination
//! multi, catch-up). Each phase runs on a fresh 1-shard `Attached(1)` tenant with a timeline,
//! migrated to the node that holds nothing of it, with `pause` at the phase's failpoint on
//! every replica; the leader is killed once it reached it.
//!
//! After each kill the new leader must finish the migration from what it observes:
//! - the shard ends attached on the destination, `AttachedSingle` there and attached nowhere
//!   else (`wait_settled` checks every simulator), in a higher generation;
//! - nothing is started over: the destination was made a secondary once, the origin stale at
//!   most once, the destination `AttachedMulti` at most once;
//! - the simulators' histories are generation-safe over the whole run.
//!
//! The killed replica is restarted before the next phase, so every kill keeps a quorum.

use std::time::{Duration, Instant};

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history::{self, Event};
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};
use cluster_tests::{Cluster, ClusterOptions, ControllerOptions, Sims, StorageApi, deadline};
use reqwest::Method;
use serde_json::json;

const TAG: u32 = 0x3911;
const TL: &str = "39110000000000000000000000000001";
const PHASES: [&str; 5] = [
    "migration-before-warmup",
    "migration-before-cutover",
    "live-migration-after-stale",
    "live-migration-after-multi",
    "live-migration-after-catch-up",
];
const HIT_DEADLINE: Duration = Duration::from_secs(60);

async fn set_failpoint_everywhere(cluster: &Cluster, name: &str, actions: &str) {
    for id in cluster.live_ids() {
        StorageApi::new(cluster.client(id))
            .set_failpoint(name, actions)
            .await
            .unwrap_or_else(|e| panic!("failpoint {name}={actions} on replica {id}: {e}"));
    }
}

fn count(events: &[Event], shard: &str, node: u64, mode: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e.accepted
                && e.kind == "location_config"
                && e.node_id == node
                && e.tenant_shard_id.as_deref() == Some(shard)
                && e.mode.as_deref() == Some(mode)
        })
        .count()
}

async fn run_phase(cluster: &Cluster, sims: &Sims, n: u32, phase: &'static str) -> Duration {
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("three replicas agree before the run");
    let leader = cluster.leader_id().await.expect("a leader");
    let via = cluster.live_other_than(leader);
    let api = StorageApi::new(cluster.client(via));
    let tenant = tenant_id(TAG, n);
    let shard = shard_ids(&tenant, 1)[0].clone();
    api.create_tenant(&tenant_create_body(&tenant, 1, 1))
        .await
        .expect("tenant created");
    let before = wait_settled(&api, sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("placed")[&shard];
    let raw = api
        .send(
            Method::POST,
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(&json!({"new_timeline_id": TL})),
        )
        .await
        .expect("timeline create");
    assert_eq!(raw.status, 201, "{}", raw.body);
    let described = api.describe_tenant(&tenant).await.expect("described");
    let origin = before.node;
    let destination = sims
        .ids()
        .into_iter()
        .find(|id| *id != origin && !described.shards[0].node_secondary.contains(id))
        .expect("a node holding nothing of the shard");

    let leader_api = StorageApi::new(cluster.client(leader));
    set_failpoint_everywhere(cluster, phase, "pause").await;
    let baseline = leader_api.failpoint_hits(phase).await.expect("failpoints");
    let call = {
        let api = api.clone();
        let path = format!("/control/v1/tenant/{shard}/migrate");
        tokio::spawn(async move {
            let body =
                json!({"node_id": destination, "migration_config": {"override_scheduler": true}});
            api.send(Method::PUT, &path, Some(&body)).await
        })
    };
    let started = Instant::now();
    loop {
        if leader_api
            .failpoint_hits(phase)
            .await
            .is_ok_and(|h| h > baseline)
        {
            break;
        }
        assert!(
            started.elapsed() < HIT_DEADLINE,
            "{phase}: the leader did not reach the failpoint"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = Instant::now();
    cluster.kill(leader);
    set_failpoint_everywhere(cluster, phase, "off").await;
    cluster
        .wait_for_new_leader(leader, deadline::ELECTION)
        .await
        .expect("a new leader");
    // The call's answer depends on the phase (before the kill, or cut by it): not checked.
    let _ = tokio::time::timeout(Duration::from_secs(60), call).await;
    cluster.restart(leader).expect("restart the killed replica");

    let api = StorageApi::new(cluster.client(cluster.live_other_than(leader)));
    let settled = cluster_tests::wait_until(
        &format!("{phase}: the migration finished by the new leader"),
        SETTLE_DEADLINE,
        async || {
            let now = wait_settled(
                &api,
                sims,
                std::slice::from_ref(&tenant),
                Duration::from_secs(2),
            )
            .await?[&shard];
            anyhow::ensure!(now.node == destination, "attached on {} still", now.node);
            Ok(now)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let took = killed.elapsed();
    assert!(
        settled.generation > before.generation,
        "{phase}: {settled:?}"
    );

    let events = sims.all_history().expect("histories");
    assert_eq!(
        count(&events, &shard, destination, "Secondary"),
        1,
        "{phase}: the destination's secondary was made again"
    );
    assert!(
        count(&events, &shard, origin, "AttachedStale") <= 1,
        "{phase}: the origin was made stale twice"
    );
    assert_eq!(
        count(&events, &shard, destination, "AttachedMulti"),
        1,
        "{phase}: the destination was attached multi more than once"
    );
    history::ensure_safe(&events).unwrap_or_else(|e| panic!("{phase}: {e:#}"));
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_survives_leader_kill_at_every_phase() {
    // The destination is picked by what it holds, not by its score: the scheduler is
    // overridden and the optimiser off, so nothing moves the shard on afterwards.
    let ControllerFixture { sims, cluster, .. } = ControllerFixture::start_with(
        &[(1, "az-a"), (2, "az-a"), (3, "az-a")],
        SETTLE_DEADLINE,
        ClusterOptions::default(),
        ControllerOptions::without_optimiser(),
    )
    .await
    .expect("a formed cluster with Active simulators");
    // Slow enough that the warm-up is still running at its failpoints.
    sims.set_behaviour(&json!({"download_ms_per_layer": 50, "catch_up_ms": 200}))
        .await
        .expect("rates set");
    let mut rows = Vec::new();
    for (n, phase) in PHASES.into_iter().enumerate() {
        let took = run_phase(&cluster, &sims, n as u32 + 1, phase).await;
        rows.push(format!(
            "{phase:<32} kill -> settled on the destination {took:?}"
        ));
    }
    eprintln!("{}", rows.join("\n"));
    sims.check_no_crashes().expect("no simulator crashed");
}
