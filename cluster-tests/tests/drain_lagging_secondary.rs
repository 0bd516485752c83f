//! A drain skips a shard whose secondary lags too far (upstream's
//! `test_skip_drain_on_secondary_lag`): on two simulated pageservers, a tenant whose secondary
//! cannot download (`secondary_downloads_paused` on its node) and holds none of the 300 MiB
//! of layers its heatmap names (30 timelines of 10 MiB), above the 256 MiB limit, and a warm
//! tenant attached on the same node.
//!
//! The drain moves the warm tenant, leaves the lagging one attached where it was in the same
//! generation, and still ends `PauseForRestart`. The pageserver restarts; once the secondary
//! has caught up, a second drain moves the other tenant too. Histories are generation-safe.

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{Attachment, SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{tenant_create_body, tenant_id};
use cluster_tests::{ClusterOptions, ControllerOptions, Sims, StorageApi, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0xd1a9;
/// 30 timelines × 10 layers × 1 MiB: above the drain's 256 MiB lag limit.
const LAGGING_TIMELINES: u32 = 30;
const LAG_LIMIT: u64 = 256 << 20;

fn timeline_id(n: u32) -> String {
    format!("{TAG:08x}{n:024x}")
}

async fn create_timeline(api: &StorageApi, tenant: &str, n: u32) {
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(&json!({"new_timeline_id": timeline_id(n)})),
        )
        .await;
    assert_eq!(status, 201, "{tenant}: {body}");
}

async fn drain_to_pause(api: &StorageApi, node: u64) {
    let (status, body) = api
        .call(Method::PUT, &format!("/control/v1/node/{node}/drain"), None)
        .await;
    assert_eq!(status, 202, "{body}");
    wait_until(
        &format!("node {node} PauseForRestart"),
        SETTLE_DEADLINE,
        async || {
            let now = api.node_scheduling(node).await?.unwrap_or_default();
            anyhow::ensure!(now == "PauseForRestart", "{now}");
            Ok(())
        },
    )
    .await
    .expect("the drain ends PauseForRestart");
}

/// The only attachment of unsharded `tenant`, once settled.
async fn attachment(api: &StorageApi, sims: &Sims, tenant: &str) -> Attachment {
    let settled = wait_settled(api, sims, &[tenant.to_string()], SETTLE_DEADLINE)
        .await
        .expect("settled");
    settled.into_values().next().expect("one shard")
}

/// Secondary download through the controller until the secondary holds every layer.
async fn warm_up(api: &StorageApi, shard: &str) {
    wait_until(
        &format!("{shard}'s secondary to hold its heatmap"),
        SETTLE_DEADLINE,
        async || {
            let path = format!("/v1/tenant/{shard}/secondary/download?wait_ms=2000");
            let (status, body) = api.call(Method::POST, &path, None).await;
            anyhow::ensure!(status == 200, "{status} {body}");
            Ok(())
        },
    )
    .await
    .expect("downloaded");
}

async fn secondary_status(sims: &Sims, node: u64, shard: &str) -> Value {
    let (status, body) = sims
        .request(
            node,
            Method::GET,
            &format!("/v1/tenant/{shard}/secondary/status"),
            None,
        )
        .await
        .expect("secondary status");
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_skips_lagging_secondary() {
    let ControllerFixture {
        sims,
        cluster,
        follower,
        ..
    } = ControllerFixture::start_with(
        &[(1, "az-a"), (2, "az-a")],
        SETTLE_DEADLINE,
        ClusterOptions::default(),
        // Placement is set by hand below; the optimiser would move it back.
        ControllerOptions::without_optimiser(),
    )
    .await
    .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let (lagging, warm) = (tenant_id(TAG, 1), tenant_id(TAG, 2));
    for t in [&lagging, &warm] {
        api.create_tenant(&tenant_create_body(t, 0, 1))
            .await
            .expect("create");
    }
    let lagging_before = attachment(&api, &sims, &lagging).await;
    let node = lagging_before.node;
    let other = sims
        .ids()
        .into_iter()
        .find(|n| *n != node)
        .expect("two nodes");
    // Both tenants attached on `node`, their secondaries on `other`.
    if attachment(&api, &sims, &warm).await.node != node {
        let (status, body) = api
            .call(
                Method::PUT,
                &format!("/control/v1/tenant/{warm}/migrate"),
                Some(&json!({"node_id": node, "migration_config": {"override_scheduler": true}})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    wait_until(
        &format!("{warm} attached on {node}"),
        SETTLE_DEADLINE,
        async || {
            let now = attachment(&api, &sims, &warm).await;
            anyhow::ensure!(now.node == node, "{now:?}");
            Ok(())
        },
    )
    .await
    .expect("migrated");
    create_timeline(&api, &warm, 0).await;
    warm_up(&api, &warm).await;

    // The lagging secondary: its node downloads nothing while the tenant grows.
    sims.set_behaviour_of(other, &json!({"secondary_downloads_paused": true}))
        .await
        .expect("pause downloads");
    for n in 0..LAGGING_TIMELINES {
        create_timeline(&api, &lagging, n).await;
    }
    let progress = secondary_status(&sims, other, &lagging).await;
    let lag = progress["bytes_total"].as_u64().expect("bytes_total")
        - progress["bytes_downloaded"]
            .as_u64()
            .expect("bytes_downloaded");
    assert!(
        lag > LAG_LIMIT,
        "the secondary lags {lag} bytes: {progress}"
    );
    let warm_progress = secondary_status(&sims, other, &warm).await;
    assert_eq!(
        warm_progress["bytes_total"], warm_progress["bytes_downloaded"],
        "{warm_progress}"
    );
    let lagging_before = attachment(&api, &sims, &lagging).await;
    let warm_before = attachment(&api, &sims, &warm).await;

    drain_to_pause(&api, node).await;
    let warm_after = attachment(&api, &sims, &warm).await;
    assert_eq!(warm_after.node, other, "the warm tenant was drained");
    assert!(warm_after.generation > warm_before.generation);
    assert_eq!(
        attachment(&api, &sims, &lagging).await,
        lagging_before,
        "the lagging tenant stays where it was"
    );

    // The operator restarts the pageserver; its re-attach makes it Active again.
    sims.kill(node);
    sims.restart(node).await.expect("restarted");
    sims.wait_active(&api, &[node], SETTLE_DEADLINE)
        .await
        .expect("node active");
    wait_until("node Active", SETTLE_DEADLINE, async || {
        let now = api.node_scheduling(node).await?.unwrap_or_default();
        anyhow::ensure!(now == "Active", "{now}");
        Ok(())
    })
    .await
    .expect("re-attach ends the pause");
    assert_eq!(
        attachment(&api, &sims, &lagging).await.node,
        node,
        "still attached on the restarted node"
    );

    // Downloads resume; once the secondary has caught up, a drain moves the tenant.
    sims.set_behaviour_of(other, &json!({"secondary_downloads_paused": false}))
        .await
        .expect("resume downloads");
    warm_up(&api, &lagging).await;
    let lagging_before = attachment(&api, &sims, &lagging).await;
    drain_to_pause(&api, node).await;
    let lagging_after = attachment(&api, &sims, &lagging).await;
    assert_eq!(lagging_after.node, other, "drained once caught up");
    assert!(lagging_after.generation > lagging_before.generation);

    // Secondary only on the drained node: nothing attached there.
    let held = sims.locations(node).await.expect("locations");
    for t in [&lagging, &warm] {
        assert_eq!(
            held.get(t.as_str()).map(|l| l.mode.as_str()),
            Some("Secondary"),
            "{t}"
        );
    }
    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
}
