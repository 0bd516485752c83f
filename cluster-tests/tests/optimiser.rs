//! The background optimiser on a live cluster (issue 11, items 2 and 5):
//!
//! - `split_children_spread_with_prewarmed_migrations`: a tenant with a timeline splits 1 -> 4
//!   on one node of a three-node AZ; its children stay there at first and the optimiser then
//!   spreads them over the AZ's three nodes. Every child that moved did so gracefully: on its
//!   destination a secondary first, a warm-up download, then `AttachedMulti` and
//!   `AttachedSingle`, the origin `AttachedStale` before the destination attached. Once
//!   `reconcile_all` answers 0 the placement stays put over further passes (no oscillation);
//!   the histories are safe.
//! - `skew_is_balanced_and_preferred_azs_are_repaired`: tenants created while the other
//!   nodes take no work all land on node 1; once they do, the optimiser balances the AZ's two
//!   nodes. `PUT /control/v1/preferred_azs` moves one tenant's home to the other AZ and the
//!   optimiser moves its attachment there; refused requests change nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history::{self, Event};
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};
use cluster_tests::{Sims, StorageApi, wait_until};
use reqwest::Method;
use serde_json::json;

const TAG: u32 = 0x0971;
const TL: &str = "0a0b0c0d0e0f10111213141516171819";
/// Migrations warm up before they cut over: give the optimiser's passes room.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(120);

/// Calls `reconcile_all` until it answers 0: every reconcile done, no optimisation left.
async fn wait_placed(api: &StorageApi) {
    wait_until("reconcile_all answers 0", CONVERGE_DEADLINE, async || {
        let n = api.reconcile_all().await?;
        anyhow::ensure!(n == 0, "{n} still pending");
        Ok(())
    })
    .await
    .expect("the optimiser converges");
}

/// Attached node of every shard of `tenants`.
async fn attachments(api: &StorageApi, tenants: &[String]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for t in tenants {
        let d = api.describe_tenant(t).await.expect("describe");
        for s in d.shards {
            out.insert(
                s.tenant_shard_id.to_string(),
                s.node_attached.expect("attached"),
            );
        }
    }
    out
}

fn shard_events(sims: &Sims, shard: &str) -> Vec<Event> {
    let mut events: Vec<Event> = sims
        .all_history()
        .expect("histories")
        .into_iter()
        .filter(|e| e.accepted && e.tenant_shard_id.as_deref() == Some(shard))
        .collect();
    events.sort_by(|a, b| a.ts.cmp(&b.ts));
    events
}

fn position(events: &[Event], from: usize, what: &str, pred: impl Fn(&Event) -> bool) -> usize {
    events
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, e)| pred(e))
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("no {what} after event {from}: {events:#?}"))
}

fn location(e: &Event, node: u64, mode: &str) -> bool {
    e.kind == "location_config" && e.node_id == node && e.mode.as_deref() == Some(mode)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_children_spread_with_prewarmed_migrations() {
    let fx = ControllerFixture::start(
        &[(1, "az-a"), (2, "az-a"), (3, "az-a"), (4, "az-b")],
        SETTLE_DEADLINE,
    )
    .await
    .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(fx.cluster.client(fx.follower));
    let tenant = tenant_id(TAG, 1);
    api.create_tenant(&tenant_create_body(&tenant, 0, 1))
        .await
        .expect("created");
    let (got, answer) = api
        .call(
            Method::POST,
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(&json!({"new_timeline_id": TL, "pg_version": 16})),
        )
        .await;
    assert_eq!(got, 201, "{answer}");
    let parent = wait_settled(
        &api,
        &fx.sims,
        std::slice::from_ref(&tenant),
        SETTLE_DEADLINE,
    )
    .await
    .expect("placed")[&shard_ids(&tenant, 0)[0]]
        .node;
    assert!((1..=3).contains(&parent), "home AZ az-a: {parent}");

    let r = api.split_tenant(&tenant, 4, None).await.expect("answer");
    assert_eq!(r.status, 200, "{r:?}");
    wait_placed(&api).await;
    let placed = attachments(&api, std::slice::from_ref(&tenant)).await;
    let mut per_node: BTreeMap<u64, usize> = BTreeMap::new();
    for node in placed.values() {
        *per_node.entry(*node).or_default() += 1;
    }
    assert_eq!(
        per_node.keys().copied().collect::<BTreeSet<u64>>(),
        BTreeSet::from([1, 2, 3]),
        "spread over az-a's three nodes: {placed:?}"
    );
    assert!(per_node.values().all(|c| *c <= 2), "{per_node:?}");

    // Each child that left its parent's node went gracefully.
    let mut moved = 0;
    for (child, node) in &placed {
        if *node == parent {
            continue;
        }
        moved += 1;
        let events = shard_events(&fx.sims, child);
        let secondary = position(&events, 0, "the destination's secondary", |e| {
            location(e, *node, "Secondary")
        });
        let warm = position(&events, secondary, "a warm-up download", |e| {
            e.kind == "secondary_download" && e.node_id == *node
        });
        let stale = position(&events, warm, "the origin stale", |e| {
            location(e, parent, "AttachedStale")
        });
        let multi = position(&events, stale, "the destination multi", |e| {
            location(e, *node, "AttachedMulti")
        });
        position(&events, multi, "the destination single", |e| {
            location(e, *node, "AttachedSingle")
        });
    }
    assert!(
        moved >= 2,
        "at least two of four children left node {parent}"
    );

    // Settled: further passes move nothing.
    let calls = fx.sims.location_config_calls().expect("histories");
    for _ in 0..3 {
        assert_eq!(api.reconcile_all().await.expect("reconcile_all"), 0);
    }
    assert_eq!(
        attachments(&api, std::slice::from_ref(&tenant)).await,
        placed
    );
    assert_eq!(fx.sims.location_config_calls().expect("histories"), calls);
    history::ensure_safe(&fx.sims.all_history().expect("histories")).expect("history safe");
    api.consistency_check().await.expect("consistency");
    fx.cluster.check_no_crashes().expect("no replica crashed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skew_is_balanced_and_preferred_azs_are_repaired() {
    let fx = ControllerFixture::start(&[(1, "az-a"), (2, "az-a"), (3, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(fx.cluster.client(fx.follower));
    for node in [2, 3] {
        api.configure_node(node, &json!({"node_id": node, "scheduling": "Pause"}))
            .await
            .expect("paused");
    }
    let tenants: Vec<String> = (0..4).map(|n| tenant_id(TAG, 10 + n)).collect();
    for t in &tenants {
        api.create_tenant(&tenant_create_body(t, 0, 0))
            .await
            .expect("created");
    }
    wait_settled(&api, &fx.sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("placed");
    let skewed = attachments(&api, &tenants).await;
    assert!(skewed.values().all(|n| *n == 1), "{skewed:?}");

    for node in [2, 3] {
        api.configure_node(node, &json!({"node_id": node, "scheduling": "Active"}))
            .await
            .expect("active");
    }
    wait_placed(&api).await;
    let balanced = attachments(&api, &tenants).await;
    let on = |n: u64, p: &BTreeMap<String, u64>| p.values().filter(|v| **v == n).count();
    assert_eq!(
        (on(1, &balanced), on(2, &balanced), on(3, &balanced)),
        (2, 2, 0),
        "balanced within az-a, nothing moved out of it: {balanced:?}"
    );

    // Refused: nothing changes.
    let shard = shard_ids(&tenants[0], 0)[0].clone();
    let (got, body) = api
        .call(
            Method::PUT,
            "/control/v1/preferred_azs",
            Some(&json!({shard.clone(): "az-b", shard_ids(&tenant_id(TAG, 99), 0)[0].clone(): "az-a"})),
        )
        .await;
    assert_eq!(got, 404, "unknown shard: {body}");
    assert!(body["msg"].is_string(), "{body}");
    let (got, body) = api
        .call(
            Method::PUT,
            "/control/v1/preferred_azs",
            Some(
                &json!({shard.clone(): "az-b", shard_ids(&tenants[1], 0)[0].clone(): "az-nowhere"}),
            ),
        )
        .await;
    assert_eq!(got, 400, "AZ without a node: {body}");
    let (got, body) = api
        .call(
            Method::PUT,
            "/control/v1/preferred_azs",
            Some(&json!({shard.clone(): 7})),
        )
        .await;
    assert_eq!(got, 400, "not a string: {body}");
    for t in &tenants {
        let d = api.describe_tenant(t).await.expect("describe");
        assert_eq!(d.shards[0].preferred_az_id.as_deref(), Some("az-a"), "{t}");
    }

    // Accepted: the optimiser takes the attachment to its new home.
    let (got, body) = api
        .call(
            Method::PUT,
            "/control/v1/preferred_azs",
            Some(&json!({shard.clone(): "az-b", shard_ids(&tenants[1], 0)[0].clone(): "az-a"})),
        )
        .await;
    assert_eq!(got, 200, "{body}");
    assert_eq!(
        body,
        json!({"updated": [shard.clone()]}),
        "only the changed shard"
    );
    wait_placed(&api).await;
    let repaired = attachments(&api, &tenants).await;
    assert_eq!(repaired[&shard], 3, "{repaired:?}");
    let d = api.describe_tenant(&tenants[0]).await.expect("describe");
    assert_eq!(d.shards[0].preferred_az_id.as_deref(), Some("az-b"));
    history::ensure_safe(&fx.sims.all_history().expect("histories")).expect("history safe");
    api.consistency_check().await.expect("consistency");
    fx.cluster.check_no_crashes().expect("no replica crashed");
}
