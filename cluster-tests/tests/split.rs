//! Splits on a live cluster with bystanders: 1 -> 4 (with a new stripe size), 4 -> 8, and 2 -> 4.
//!
//! Each answer lists the children in upstream's numbering; afterwards the tenant is at one shard
//! count on the controller and on every simulator, children are attached on their parent's
//! node with one secondary each (`Attached(1)`; the optimiser is off here), the bystanders' attachments and generations
//! did not move, the simulators' histories are safe, and consistency_check passes. A repeated
//! request is a no-op answering the same shards, and the upstream validation answers come back
//! with nothing changed.

use std::collections::BTreeSet;

use cluster_tests::config::ControllerOptions;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::splits::{new_shards, wait_split_settled};
use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};

const TAG: u32 = 0x5b1;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_with_bystanders() {
    let options = ControllerOptions::without_optimiser();
    let fx = ControllerFixture::start_with(
        &[(1, "az-a"), (2, "az-a"), (3, "az-b")],
        SETTLE_DEADLINE,
        Default::default(),
        options,
    )
    .await
    .expect("a formed cluster with Active simulators");
    let api = cluster_tests::StorageApi::new(fx.cluster.client(fx.follower));

    let single = tenant_id(TAG, 1);
    let pair = tenant_id(TAG, 2);
    let bystanders = vec![tenant_id(TAG, 3), tenant_id(TAG, 4)];
    api.create_tenant(&tenant_create_body(&single, 0, 1))
        .await
        .expect("create unsharded");
    api.create_tenant(&tenant_create_body(&pair, 2, 1))
        .await
        .expect("create 2 shards");
    for (i, b) in bystanders.iter().enumerate() {
        api.create_tenant(&tenant_create_body(b, if i == 0 { 0 } else { 4 }, 1))
            .await
            .expect("create bystander");
    }
    let before = wait_settled(&api, &fx.sims, &bystanders, SETTLE_DEADLINE)
        .await
        .expect("bystanders settled");

    // Validation answers first: nothing may change.
    let r = api.split_tenant(&pair, 1, None).await.expect("answer");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.msg()
            .is_some_and(|m| m.contains("already have shards at count 2"))
    );
    let r = api.split_tenant(&pair, 4, Some(512)).await.expect("answer");
    assert_eq!(r.status, 400, "stripe change on a sharded tenant: {r:?}");
    let r = api.split_tenant(&pair, 3, None).await.expect("answer");
    assert_eq!(r.status, 400, "not a multiple: {r:?}");
    let r = api
        .split_tenant(&tenant_id(TAG, 99), 4, None)
        .await
        .expect("answer");
    assert_eq!(r.status, 404, "{r:?}");
    let r = api
        .send(
            reqwest::Method::PUT,
            &format!("/control/v1/tenant/{pair}/shard_split"),
            Some(&serde_json::json!({"new_shard_count": "four"})),
        )
        .await
        .expect("answer");
    assert_eq!(r.status, 400, "malformed body: {r:?}");
    let r = api.split_tenant(&pair, 2, None).await.expect("answer");
    assert_eq!(r.status, 200, "already at the count: {r:?}");
    assert_eq!(new_shards(&r.body), shard_ids(&pair, 2));
    wait_settled(&api, &fx.sims, std::slice::from_ref(&pair), SETTLE_DEADLINE)
        .await
        .expect("unchanged after refused splits");

    // 1 -> 4 with a new stripe size, then 4 -> 8; 2 -> 4.
    for (tenant, count, stripe) in [
        (&single, 4u8, Some(1024u32)),
        (&single, 8, None),
        (&pair, 4, None),
    ] {
        let started = std::time::Instant::now();
        let r = api
            .split_tenant(tenant, count, stripe)
            .await
            .expect("answer");
        assert_eq!(r.status, 200, "split {tenant} to {count}: {r:?}");
        let expected = shard_ids(tenant, count);
        assert_eq!(new_shards(&r.body), expected);
        eprintln!(
            "split {tenant} -> {count} answered in {:?}",
            started.elapsed()
        );
        let settled = wait_split_settled(
            &api,
            &fx.sims,
            tenant,
            &expected,
            &bystanders,
            SETTLE_DEADLINE,
        )
        .await
        .unwrap_or_else(|e| panic!("split {tenant} to {count} settles: {e:#}"));
        let described = api.describe_tenant(tenant).await.expect("describe");
        for s in &described.shards {
            assert_eq!(s.node_secondary.len(), 1, "{s:?}");
        }
        // Children stay attached on their parent's node, as upstream (the optimiser, off
        // here, spreads them later: the optimiser test), in the tenant's AZ.
        let az = described.shards[0].preferred_az_id.clone();
        let az_nodes: BTreeSet<u64> = match az.as_deref() {
            Some("az-a") => BTreeSet::from([1, 2]),
            Some("az-b") => BTreeSet::from([3]),
            other => panic!("unexpected preferred AZ {other:?}"),
        };
        let attached_on: BTreeSet<u64> = expected.iter().map(|id| settled[id].node).collect();
        assert_eq!(
            attached_on.len(),
            1,
            "children of {tenant} on their parent's node: {attached_on:?}"
        );
        assert!(
            attached_on.is_subset(&az_nodes),
            "{attached_on:?} in {az:?}"
        );
        for (id, a) in &before {
            assert_eq!(settled[id], *a, "bystander {id} moved");
        }
        // A repeat is a no-op answering the same shards.
        let again = api.split_tenant(tenant, count, None).await.expect("answer");
        assert_eq!(again.status, 200, "{again:?}");
        assert_eq!(new_shards(&again.body), expected);
    }
    let described = api.describe_tenant(&single).await.expect("describe");
    assert_eq!(described.stripe_size, 1024, "the new stripe size stays");

    history::ensure_safe(&fx.sims.all_history().expect("histories")).expect("history safe");
    api.consistency_check().await.expect("consistency");
    fx.cluster.check_no_crashes().expect("no replica crashed");
    fx.sims.check_no_crashes().expect("no simulator crashed");
}
