//! Node deletion with tombstones (issue 11, item 4), on four simulated pageservers:
//!
//! - `delete_moves_everything_then_tombstones`: a node holding attachments and secondaries is
//!   deleted (200): every shard ends placed elsewhere, attachments moved live (the node
//!   `AttachedStale` first), the node holds nothing and is gone from the listing; its id is
//!   tombstoned: registering it again is 409, its re-attach is 409, `GET /debug/v1/tombstone`
//!   lists it, and after `DELETE /debug/v1/tombstone/:id` (then 404) it may register again.
//!   A delete cancelled part-way leaves the node listed and `Active`, with its remaining
//!   shards; the legacy `DELETE /control/v1/node/:id` of an unknown node is 200.

use std::collections::BTreeMap;

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{tenant_create_body, tenant_id};
use cluster_tests::{StorageApi, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0xde1e;
const TL: &str = "de1e0000000000000000000000000001";

/// Shards per node by intent: (attached, secondary).
async fn per_node(api: &StorageApi, tenants: &[String]) -> BTreeMap<u64, (usize, usize)> {
    let mut out: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    for t in tenants {
        for s in api.describe_tenant(t).await.expect("describe").shards {
            if let Some(n) = s.node_attached {
                out.entry(n).or_default().0 += 1;
            }
            for n in s.node_secondary {
                out.entry(n).or_default().1 += 1;
            }
        }
    }
    out
}

fn register_body(id: u64, port: u16) -> Value {
    json!({"node_id": id, "listen_pg_addr": "127.0.0.1", "listen_pg_port": port,
           "listen_http_addr": "127.0.0.1", "listen_http_port": port,
           "availability_zone_id": "az-a"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_moves_everything_then_tombstones() {
    let ControllerFixture {
        sims,
        cluster,
        follower,
        ..
    } = ControllerFixture::start(
        &[(1, "az-a"), (2, "az-a"), (3, "az-a"), (4, "az-a")],
        SETTLE_DEADLINE,
    )
    .await
    .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let tenants: Vec<String> = (1..=6).map(|n| tenant_id(TAG, n)).collect();
    for t in &tenants {
        api.create_tenant(&tenant_create_body(t, 1, 1))
            .await
            .expect("tenant created");
    }
    wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("placed");
    for t in &tenants {
        let (got, answer) = api
            .call(
                Method::POST,
                &format!("/v1/tenant/{t}/timeline"),
                Some(&json!({"new_timeline_id": TL})),
            )
            .await;
        assert_eq!(got, 201, "{answer}");
    }
    let before = per_node(&api, &tenants).await;
    let (&victim, &(attached, _)) = before
        .iter()
        .max_by_key(|(_, (a, s))| (*a, *s))
        .expect("placements");
    assert!(attached >= 1, "{before:?}");

    let (got, answer) = api
        .call(
            Method::PUT,
            &format!("/control/v1/node/{victim}/delete"),
            None,
        )
        .await;
    assert_eq!(got, 200, "{answer}");
    wait_until("the node deleted", SETTLE_DEADLINE, async || {
        let nodes = api.nodes().await?;
        anyhow::ensure!(nodes.iter().all(|n| n.id != victim), "still listed");
        Ok(())
    })
    .await
    .expect("deleted");
    let after = per_node(&api, &tenants).await;
    assert!(!after.contains_key(&victim), "{after:?}");
    let placed = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("placed elsewhere");
    assert!(placed.values().all(|a| a.node != victim));
    let held = sims.locations(victim).await.expect("listed");
    assert!(held.is_empty(), "the deleted node still holds {held:?}");
    let events = sims.history(victim).expect("history");
    assert!(
        events
            .iter()
            .any(|e| e.accepted && e.mode.as_deref() == Some("AttachedStale")),
        "attachments were not moved live"
    );

    // The tombstone keeps the id out.
    let port = sims.addr(victim).port();
    let (got, answer) = api
        .call(
            Method::POST,
            "/control/v1/node",
            Some(&register_body(victim, port)),
        )
        .await;
    assert_eq!(got, 409, "{answer}");
    let (got, answer) = api
        .call(
            Method::POST,
            "/upcall/v1/re-attach",
            Some(&json!({"node_id": victim})),
        )
        .await;
    assert_eq!(got, 409, "{answer}");
    let (got, listed) = api.call(Method::GET, "/debug/v1/tombstone", None).await;
    assert_eq!(got, 200, "{listed}");
    let ids: Vec<u64> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|n| n["id"].as_u64())
        .collect();
    assert_eq!(ids, vec![victim]);
    let tombstone = format!("/debug/v1/tombstone/{victim}");
    let (got, answer) = api.call(Method::DELETE, &tombstone, None).await;
    assert_eq!(got, 200, "{answer}");
    let (got, _) = api.call(Method::DELETE, &tombstone, None).await;
    assert_eq!(got, 404);
    let (got, listed) = api.call(Method::GET, "/debug/v1/tombstone", None).await;
    assert_eq!((got, listed), (200, json!([])));

    // A delete cancelled part-way: slow catch-ups keep it running while it is cancelled.
    sims.set_behaviour(&json!({"catch_up_ms": 3000}))
        .await
        .expect("slow catch-up");
    let now = per_node(&api, &tenants).await;
    let (&other, _) = now.iter().max_by_key(|(_, (a, _))| *a).expect("placements");
    let path = format!("/control/v1/node/{other}/delete");
    let (got, answer) = api.call(Method::PUT, &path, None).await;
    assert_eq!(got, 200, "{answer}");
    let (got, answer) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(got, 202, "{answer}");
    let (got, _) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(got, 412, "nothing to cancel");
    let nodes = api.nodes().await.expect("nodes");
    let node = nodes.iter().find(|n| n.id == other).expect("still listed");
    assert_eq!(node.scheduling, "Active");
    wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("settled after the cancel");

    let (got, answer) = api
        .call(Method::DELETE, "/control/v1/node/4242", None)
        .await;
    assert_eq!(got, 200, "legacy delete of an unknown node: {answer}");
    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
    api.consistency_check().await.expect("consistent");
    cluster.check_no_crashes().expect("no replica crashed");
}
