//! Deletion that deletes, time travel and heatmaps (issue 10, items 3 and 4), end to end on
//! simulated pageservers that share one simulated remote storage:
//!
//! - `tenant_delete_removes_remote_storage`: a 2-shard tenant with a secondary each and a
//!   timeline is split into 4, so remote storage holds the data of both shard counts. With
//!   the simulators' deletions slowed down, a DELETE runs; a second one meanwhile is 202; the
//!   first answers 200. The pageservers' tenant delete reached every attached shard, shard
//!   zero last; nothing of the tenant is left in remote storage or on any simulator; a third
//!   DELETE and a describe are 404.
//! - `time_travel_then_delete_detached`: time travel of an attached tenant is 409 and bad
//!   timestamps are 400; once the tenant is detached everywhere, it reaches, on one
//!   pageserver, every shard id of the counts named (0) and of the present count (2). A delete
//!   of the detached tenant then still removes its remote data (the unsharded-id delete).
//!   Beside it, a tenant without secondaries gets no heatmap period, so its attached location
//!   uploads no heatmap, and a secondary download for it is 404.

use std::collections::BTreeSet;
use std::time::Duration;

use cluster_tests::StorageApi;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::sims::Sims;
use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};
use cluster_tests::wait::wait_until;
use reqwest::Method;
use serde_json::json;

const TAG: u32 = 0x7de1;
const TL: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
/// Long enough that a second DELETE lands while the first runs; short enough that the whole
/// delete (three rounds: the other shards, shard zero, the unsharded id) fits the controller's
/// 25 s.
const DELETE_DELAY_MS: u64 = 1500;

async fn create_timeline(api: &StorageApi, tenant: &str) {
    let (got, created) = api
        .call(
            Method::POST,
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(&json!({"new_timeline_id": TL, "pg_version": 16})),
        )
        .await;
    assert_eq!(got, 201, "{created}");
}

/// Accepted events of `kind` for the tenant's shards: (shard, node, ts).
fn events(sims: &Sims, kind: &str, tenant: &str) -> Vec<(String, u64, String)> {
    let mut out: Vec<_> = sims
        .all_history()
        .expect("histories")
        .into_iter()
        .filter(|e| e.kind == kind && e.accepted)
        .filter_map(|e| {
            let shard = e.tenant_shard_id?;
            shard
                .starts_with(tenant)
                .then_some((shard, e.node_id, e.ts))
        })
        .collect();
    out.sort_by(|a, b| a.2.cmp(&b.2));
    out
}

async fn held_anywhere(sims: &Sims, tenant: &str) -> anyhow::Result<Vec<String>> {
    let mut held = Vec::new();
    for node in sims.live_ids() {
        for shard in sims.locations(node).await?.keys() {
            if shard.starts_with(tenant) {
                held.push(format!("{shard} on {node}"));
            }
        }
    }
    Ok(held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_delete_removes_remote_storage() {
    let ControllerFixture {
        sims,
        cluster,
        follower,
        ..
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-a"), (3, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let tenant = tenant_id(TAG, 1);
    api.create_tenant(&tenant_create_body(&tenant, 2, 1))
        .await
        .expect("tenant created");
    wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("placed");
    create_timeline(&api, &tenant).await;
    let split = api.split_tenant(&tenant, 4, None).await.expect("split");
    assert_eq!(split.status, 200, "{}", split.body);
    let placed = wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("placed after the split");
    let children = shard_ids(&tenant, 4);
    let mut both_counts = shard_ids(&tenant, 2);
    both_counts.extend(children.iter().cloned());
    both_counts.sort();
    assert_eq!(
        sims.remote_shards(&tenant).expect("remote"),
        both_counts,
        "remote storage should hold both shard counts before the delete"
    );

    sims.set_behaviour(&json!({"delete_delay_ms": DELETE_DELAY_MS}))
        .await
        .expect("deletions slowed");
    let tenant_path = format!("/v1/tenant/{tenant}");
    let first = {
        let api = api.clone();
        let path = tenant_path.clone();
        tokio::spawn(async move { api.send(Method::DELETE, &path, None).await })
    };
    wait_until(
        "the delete to reach a pageserver",
        Duration::from_secs(30),
        async || {
            anyhow::ensure!(
                !events(&sims, "tenant_delete", &tenant).is_empty(),
                "not yet"
            );
            Ok(())
        },
    )
    .await
    .expect("delete running");
    let (got, answer) = api.call(Method::DELETE, &tenant_path, None).await;
    assert_eq!(got, 202, "a delete while one runs: {answer}");
    let first = first.await.expect("delete task").expect("delete answered");
    assert_eq!(first.status, 200, "{}", first.body);

    // Every attached shard got the pageserver's delete where it was attached, shard zero last.
    let deletes = events(&sims, "tenant_delete", &tenant);
    let deleted: BTreeSet<&str> = deletes.iter().map(|(s, _, _)| s.as_str()).collect();
    for child in &children {
        assert!(deleted.contains(child.as_str()), "{child}: {deletes:?}");
        let at = deletes
            .iter()
            .find(|(s, _, _)| s == child)
            .expect("present");
        assert_eq!(
            at.1, placed[child].node,
            "{child} deleted off its attachment"
        );
    }
    let zero = deletes
        .iter()
        .find(|(s, _, _)| *s == children[0])
        .map(|(_, _, ts)| ts.clone())
        .expect("shard zero");
    let last_other = deletes
        .iter()
        .filter(|(s, _, _)| children[1..].contains(s))
        .map(|(_, _, ts)| ts.clone())
        .max()
        .expect("others");
    assert!(zero >= last_other, "shard zero before another: {deletes:?}");

    // Nothing is left: not in remote storage (either count), not on any simulator.
    assert_eq!(
        sims.remote_shards(&tenant).expect("remote"),
        Vec::<String>::new()
    );
    assert!(
        !events(&sims, "remote_delete", &tenant).is_empty(),
        "no remote deletion recorded"
    );
    assert_eq!(
        held_anywhere(&sims, &tenant).await.expect("listed"),
        Vec::<String>::new()
    );
    let (got, answer) = api.call(Method::DELETE, &tenant_path, None).await;
    assert_eq!(got, 404, "{answer}");
    assert!(answer["msg"].is_string(), "{answer}");
    let (got, answer) = api
        .call(Method::GET, &format!("/control/v1/tenant/{tenant}"), None)
        .await;
    assert_eq!(got, 404, "{answer}");

    api.consistency_check().await.expect("consistent");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_then_delete_detached() {
    let ControllerFixture {
        sims,
        cluster,
        follower,
        ..
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let tenant = tenant_id(TAG, 2);
    let lonely = tenant_id(TAG, 3);
    api.create_tenant(&tenant_create_body(&tenant, 2, 1))
        .await
        .expect("tenant created");
    api.create_tenant(&tenant_create_body(&lonely, 1, 0))
        .await
        .expect("tenant without secondaries created");
    let both = [tenant.clone(), lonely.clone()];
    let placed = wait_settled(&api, &sims, &both, SETTLE_DEADLINE)
        .await
        .expect("placed");
    create_timeline(&api, &tenant).await;
    create_timeline(&api, &lonely).await;

    // Heatmaps only where there are secondaries to read them.
    let heatmap = |shard: &str| {
        sims.remote_dir()
            .join("tenants")
            .join(shard)
            .join("heatmap-v1.json")
    };
    let lonely_shard = &shard_ids(&lonely, 1)[0];
    let held = sims
        .locations(placed[lonely_shard].node)
        .await
        .expect("listed");
    assert_eq!(
        held[lonely_shard].tenant_conf.get("heatmap_period"),
        None,
        "{:?}",
        held[lonely_shard]
    );
    assert!(!heatmap(lonely_shard).exists(), "a heatmap nobody reads");
    for shard in shard_ids(&tenant, 2) {
        assert!(
            heatmap(&shard).exists(),
            "{shard}: no heatmap for its secondary"
        );
    }
    let (got, answer) = api
        .call(
            Method::POST,
            &format!("/v1/tenant/{lonely}/secondary/download?wait_ms=0"),
            None,
        )
        .await;
    assert_eq!(got, 404, "{answer}");
    assert!(answer["msg"].is_string(), "{answer}");

    // Time travel needs a detached tenant and good timestamps.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let travel = |to: &str, done: &str| {
        format!(
            "/v1/tenant/{tenant}/time_travel_remote_storage?travel_to={to}&done_if_after={done}"
        )
    };
    let good = travel("2026-01-01T00:00:00Z", &now);
    let counts = json!({"shard_counts": [0]});
    let (got, answer) = api.call(Method::PUT, &good, Some(&counts)).await;
    assert_eq!(got, 409, "attached: {answer}");
    for (path, body) in [
        (travel("last-week", &now), counts.clone()),
        (travel(&now, "2026-01-01T00:00:00Z"), counts.clone()),
        (good.clone(), json!({"shard_counts": ["four"]})),
        (good.clone(), json!({"counts": [0]})),
    ] {
        let (got, answer) = api.call(Method::PUT, &path, Some(&body)).await;
        assert_eq!(got, 400, "{path} {body}: {answer}");
        assert!(answer["msg"].is_string(), "{answer}");
    }
    assert!(events(&sims, "time_travel", &tenant).is_empty());

    let (got, answer) = api
        .call(
            Method::PUT,
            &format!("/control/v1/tenant/{tenant}/policy"),
            Some(&json!({"placement": "Detached"})),
        )
        .await;
    assert_eq!(got, 200, "{answer}");
    wait_until(
        "the tenant detached everywhere",
        SETTLE_DEADLINE,
        async || {
            let held = held_anywhere(&sims, &tenant).await?;
            anyhow::ensure!(held.is_empty(), "still held: {held:?}");
            Ok(())
        },
    )
    .await
    .expect("detached");
    let (got, answer) = api.call(Method::PUT, &good, Some(&counts)).await;
    assert_eq!(got, 200, "{answer}");
    let travelled = events(&sims, "time_travel", &tenant);
    let ids: Vec<&str> = {
        let mut ids: Vec<&str> = travelled.iter().map(|(s, _, _)| s.as_str()).collect();
        ids.sort();
        ids
    };
    let mut want = vec![tenant.clone()];
    want.extend(shard_ids(&tenant, 2));
    assert_eq!(ids, want, "{travelled:?}");
    let nodes: BTreeSet<u64> = travelled.iter().map(|(_, n, _)| *n).collect();
    assert_eq!(
        nodes.len(),
        1,
        "time travel through one pageserver: {travelled:?}"
    );

    // The detached tenant's delete still removes its remote data.
    assert!(!sims.remote_shards(&tenant).expect("remote").is_empty());
    let (got, answer) = api
        .call(Method::DELETE, &format!("/v1/tenant/{tenant}"), None)
        .await;
    assert_eq!(got, 200, "{answer}");
    assert_eq!(
        sims.remote_shards(&tenant).expect("remote"),
        Vec::<String>::new()
    );
    // The other tenant is untouched.
    assert_eq!(
        sims.remote_shards(&lonely).expect("remote"),
        vec![lonely_shard.clone()]
    );

    api.consistency_check().await.expect("consistent");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}
