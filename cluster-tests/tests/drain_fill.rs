//! Drain and fill for graceful pageserver restarts (issue 11, item 3), on three simulated
//! pageservers whose new attachments take a while to catch up (so the operations are slow
//! enough to be seen running):
//!
//! - `drain_restart_fill`: six unsharded tenants with a secondary each. A drain of the busiest node is
//!   202; while it runs a second drain is 409, a fill elsewhere is 412 and a node config change
//!   is 412. It ends `PauseForRestart` with nothing attached on the node, every shard moved live
//!   (the node `AttachedStale` before the new `AttachedSingle`). The pageserver restarts, its
//!   re-attach makes it `Active`; a fill brings its share back (balance within one shard), and
//!   the node is `Active` again. Then a drain cancelled part-way: 202, the node `Active`, a second
//!   cancel 412, and the shards not yet moved stay.
//! - `drain_survives_leader_kill`: the leader is SIGKILLed while a drain runs; the new leader
//!   resumes it to the end (`PauseForRestart`, nothing attached on the node).
//!
//! Every history is generation-safe at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{tenant_create_body, tenant_id};
use cluster_tests::{Sims, StorageApi, deadline, wait_until};
use reqwest::Method;
use serde_json::json;

const TAG: u32 = 0xd7a1;
const TL: &str = "d7a10000000000000000000000000001";

async fn status(api: &StorageApi, method: Method, path: &str) -> u16 {
    api.send(method.clone(), path, None)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
        .status
}

/// Attached shards per node, by intent.
async fn attached_per_node(api: &StorageApi, tenants: &[String]) -> BTreeMap<u64, Vec<String>> {
    let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for t in tenants {
        for s in api.describe_tenant(t).await.expect("describe").shards {
            if let Some(n) = s.node_attached {
                out.entry(n)
                    .or_default()
                    .push(s.tenant_shard_id.to_string());
            }
        }
    }
    out
}

async fn create(api: &StorageApi, sims: &Sims, tenants: &[String], shards: u8) {
    for t in tenants {
        api.create_tenant(&tenant_create_body(t, shards, 1))
            .await
            .expect("tenant created");
    }
    wait_settled(api, sims, tenants, SETTLE_DEADLINE)
        .await
        .expect("placed");
    // A timeline each, so that a move waits for the destination's catch-up.
    for t in tenants {
        let raw = api
            .send(
                Method::POST,
                &format!("/v1/tenant/{t}/timeline"),
                Some(&json!({"new_timeline_id": TL})),
            )
            .await
            .expect("timeline create");
        assert_eq!(raw.status, 201, "{}", raw.body);
    }
}

async fn wait_policy(api: &StorageApi, node: u64, want: &str) {
    wait_until(
        &format!("node {node} {want}"),
        SETTLE_DEADLINE,
        async || {
            let now = api.node_scheduling(node).await?.unwrap_or_default();
            anyhow::ensure!(now == want, "{now}");
            Ok(())
        },
    )
    .await
    .expect("policy reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_restart_fill() {
    let ControllerFixture {
        sims,
        cluster,
        follower,
        ..
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-a"), (3, "az-a")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    // Unsharded tenants: a fill takes at most one shard of a tenant per node (upstream), which
    // with 2-shard tenants on 3 nodes can leave it short of an even share.
    let tenants: Vec<String> = (1..=6).map(|n| tenant_id(TAG, n)).collect();
    create(&api, &sims, &tenants, 1).await;
    let before = attached_per_node(&api, &tenants).await;
    let (&node, moved) = before
        .iter()
        .max_by_key(|(_, shards)| shards.len())
        .expect("attachments");
    let moved = moved.clone();
    let other = sims
        .ids()
        .into_iter()
        .find(|n| *n != node)
        .expect("another node");
    // Each move waits 1 s for the destination to catch up: the drain takes a few seconds.
    sims.set_behaviour(&json!({"catch_up_ms": 1000}))
        .await
        .expect("slow catch-up");

    let drain = format!("/control/v1/node/{node}/drain");
    assert_eq!(status(&api, Method::PUT, &drain).await, 202);
    assert_eq!(
        api.node_scheduling(node).await.expect("nodes").as_deref(),
        Some("Draining")
    );
    assert_eq!(
        status(&api, Method::PUT, &drain).await,
        409,
        "the same drain again"
    );
    let fill_other = format!("/control/v1/node/{other}/fill");
    assert_eq!(
        status(&api, Method::PUT, &fill_other).await,
        412,
        "a second operation"
    );
    let config = api
        .send(
            Method::PUT,
            &format!("/control/v1/node/{other}/config"),
            Some(&json!({"node_id": other, "scheduling": "Pause"})),
        )
        .await
        .expect("config answered");
    assert_eq!(config.status, 412, "{}", config.body);
    assert_eq!(
        status(&api, Method::PUT, "/control/v1/node/77/drain").await,
        404
    );

    wait_policy(&api, node, "PauseForRestart").await;
    let drained = attached_per_node(&api, &tenants).await;
    assert!(
        !drained.contains_key(&node),
        "still attached on {node}: {drained:?}"
    );
    let settled = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("settled after the drain");
    let events = sims.all_history().expect("histories");
    for shard in &moved {
        let (to, generation) = (settled[shard].node, settled[shard].generation);
        let at = |node_id: u64, mode: &str, g: Option<u32>| {
            events
                .iter()
                .filter(|e| {
                    e.accepted
                        && e.kind == "location_config"
                        && e.node_id == node_id
                        && e.tenant_shard_id.as_deref() == Some(shard.as_str())
                        && e.mode.as_deref() == Some(mode)
                        && g.is_none_or(|g| e.generation == Some(g))
                })
                .map(|e| e.ts.clone())
                .min()
        };
        let stale = at(node, "AttachedStale", None)
            .unwrap_or_else(|| panic!("{shard}: never made stale on {node}"));
        let multi = at(to, "AttachedMulti", Some(generation))
            .unwrap_or_else(|| panic!("{shard}: never multi on {to}"));
        let single = at(to, "AttachedSingle", Some(generation))
            .unwrap_or_else(|| panic!("{shard}: never single on {to}"));
        // Histories are per simulator: compare their times (same clock, same machine).
        assert!(
            stale <= multi && multi <= single,
            "{shard}: {stale} {multi} {single}"
        );
    }

    // The pageserver restarts; its re-attach ends the pause.
    sims.kill(node);
    sims.restart(node).await.expect("restarted");
    wait_policy(&api, node, "Active").await;
    sims.wait_active(&api, &[node], SETTLE_DEADLINE)
        .await
        .expect("node active");
    let fill = format!("/control/v1/node/{node}/fill");
    assert_eq!(status(&api, Method::PUT, &fill).await, 202);
    wait_until(
        "the fill to bring the node its share",
        SETTLE_DEADLINE,
        async || {
            anyhow::ensure!(
                api.node_scheduling(node).await?.as_deref() == Some("Active"),
                "still filling"
            );
            let per = attached_per_node(&api, &tenants).await;
            let counts: Vec<usize> = sims
                .ids()
                .iter()
                .map(|n| per.get(n).map_or(0, Vec::len))
                .collect();
            let (min, max) = (counts.iter().min(), counts.iter().max());
            anyhow::ensure!(
                max.zip(min).is_some_and(|(a, b)| a - b <= 1),
                "counts {counts:?}"
            );
            Ok(())
        },
    )
    .await
    .expect("balanced");
    wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("settled after the fill");

    // A drain cancelled part-way (catch-up slower still, so it is cancelled mid-move).
    sims.set_behaviour(&json!({"catch_up_ms": 3000}))
        .await
        .expect("slower catch-up");
    let before_cancel = attached_per_node(&api, &tenants).await;
    let target = *before_cancel
        .iter()
        .max_by_key(|(_, s)| s.len())
        .expect("attachments")
        .0;
    let had = before_cancel[&target].len();
    let drain = format!("/control/v1/node/{target}/drain");
    assert_eq!(status(&api, Method::PUT, &drain).await, 202);
    assert_eq!(status(&api, Method::DELETE, &drain).await, 202);
    assert_eq!(
        api.node_scheduling(target).await.expect("nodes").as_deref(),
        Some("Active")
    );
    assert_eq!(
        status(&api, Method::DELETE, &drain).await,
        412,
        "nothing to cancel"
    );
    let settled = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("settled after the cancel");
    let left = settled.values().filter(|a| a.node == target).count();
    assert!(
        left >= had.saturating_sub(1),
        "cancel moved {} of {had}",
        had - left
    );

    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_survives_leader_kill() {
    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower,
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-a"), (3, "az-a")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let tenants: Vec<String> = (10..=12).map(|n| tenant_id(TAG, n)).collect();
    create(&api, &sims, &tenants, 2).await;
    let before = attached_per_node(&api, &tenants).await;
    let node = *before.iter().max_by_key(|(_, s)| s.len()).expect("some").0;
    assert!(before[&node].len() >= 2, "{before:?}");
    sims.set_behaviour(&json!({"catch_up_ms": 1500}))
        .await
        .expect("slow catch-up");
    assert_eq!(
        status(&api, Method::PUT, &format!("/control/v1/node/{node}/drain")).await,
        202
    );
    // Kill once the first shard has started moving (its origin went stale).
    let first = before[&node][0].clone();
    wait_until(
        "the first move under way",
        Duration::from_secs(30),
        async || {
            let events = sims.history(node)?;
            anyhow::ensure!(
                events.iter().any(|e| e.accepted
                    && e.mode.as_deref() == Some("AttachedStale")
                    && e.tenant_shard_id.as_deref() == Some(first.as_str())),
                "not yet"
            );
            Ok(())
        },
    )
    .await
    .expect("drain moving");
    cluster.kill(leader);
    cluster
        .wait_for_new_leader(leader, deadline::ELECTION)
        .await
        .expect("a new leader");
    let api = StorageApi::new(cluster.client(cluster.live_other_than(leader)));
    wait_policy(&api, node, "PauseForRestart").await;
    let after = attached_per_node(&api, &tenants).await;
    assert!(
        !after.contains_key(&node),
        "still attached on {node}: {after:?}"
    );
    wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("settled");
    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.restart(leader).expect("restart the killed replica");
}
