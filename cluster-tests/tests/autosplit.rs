//! Auto-split (issue 11, item 6) on three simulated pageservers with the optimiser on:
//! `split_threshold` 1 GiB up to 8 shards, and an initial split into 2 shards above 256 MiB.
//! Three unsharded tenants with a timeline each report logical sizes through the simulators'
//! `POST /v1/top_tenants` (set with `PUT /debug/sim/tenant/:id/logical_size`):
//!
//! - 3.5 GiB: split to 4 shards (each under the threshold then, so no further split);
//! - 600 MiB: under the split threshold, above the initial one: split to 2;
//! - 100 MiB: left unsharded.
//!
//! Each ends at one shard count on the controller and every simulator, with a secondary per
//! shard, and stays there; the children carry the logical size; histories are
//! generation-safe and the consistency check passes.

use std::time::Instant;

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::SETTLE_DEADLINE;
use cluster_tests::splits::{ensure_one_shard_count, wait_split_settled_with_secondaries};
use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};
use cluster_tests::{ClusterOptions, ControllerOptions, Sims, StorageApi};
use reqwest::Method;
use serde_json::json;

const TAG: u32 = 0xa5b1;
const TL: &str = "a5b10000000000000000000000000001";
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Sets `tenant`'s logical size on every simulator holding a location of it.
async fn set_logical_size(sims: &Sims, tenant: &str, bytes: u64) -> usize {
    let mut changed = 0;
    for node in sims.ids() {
        let (status, body) = sims
            .request(
                node,
                Method::PUT,
                &format!("/debug/sim/tenant/{tenant}/logical_size"),
                Some(&json!({"bytes": bytes})),
            )
            .await
            .expect("logical_size");
        match status {
            200 => changed += body["shards"].as_array().map_or(0, Vec::len),
            404 => {}
            _ => panic!("{tenant} on {node}: {status} {body}"),
        }
    }
    changed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autosplit_by_logical_size() {
    let ControllerFixture {
        sims,
        cluster,
        follower,
        ..
    } = ControllerFixture::start_with(
        &[(1, "az-a"), (2, "az-a"), (3, "az-a")],
        SETTLE_DEADLINE,
        ClusterOptions::default(),
        ControllerOptions {
            split_threshold: Some(GIB),
            max_split_shards: Some(8),
            initial_split_threshold: Some(256 * MIB),
            initial_split_shards: Some(2),
            ..ControllerOptions::test_defaults()
        },
    )
    .await
    .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let cases: [(String, u64, u8); 3] = [
        (tenant_id(TAG, 1), 3 * GIB + GIB / 2, 4),
        (tenant_id(TAG, 2), 600 * MIB, 2),
        (tenant_id(TAG, 3), 100 * MIB, 0),
    ];
    let all: Vec<String> = cases.iter().map(|(t, ..)| t.clone()).collect();
    for (tenant, ..) in &cases {
        api.create_tenant(&tenant_create_body(tenant, 0, 1))
            .await
            .expect("create");
        let (status, body) = api
            .call(
                Method::POST,
                &format!("/v1/tenant/{tenant}/timeline"),
                Some(&json!({"new_timeline_id": TL})),
            )
            .await;
        assert_eq!(status, 201, "{tenant}: {body}");
    }
    let started = Instant::now();
    for (tenant, bytes, _) in &cases {
        // The attached location and its secondary.
        let changed = set_logical_size(&sims, tenant, *bytes).await;
        assert!(changed >= 1, "{tenant}: no location took the size");
    }

    for (tenant, bytes, count) in &cases {
        let expected = shard_ids(tenant, *count);
        let others: Vec<String> = all.iter().filter(|t| *t != tenant).cloned().collect();
        wait_split_settled_with_secondaries(
            &api,
            &sims,
            tenant,
            &expected,
            &others,
            1,
            SETTLE_DEADLINE,
        )
        .await
        .unwrap_or_else(|e| panic!("{tenant} ({bytes} bytes) at {count} shards: {e:#}"));
        // The children report the tenant's logical size.
        let view = sims.view().await.expect("view");
        for shard in &expected {
            let (node, _) = view[shard]
                .iter()
                .find(|(_, l)| l.mode.starts_with("Attached"))
                .unwrap_or_else(|| panic!("{shard} attached somewhere"));
            let (status, top) = sims
                .request(
                    *node,
                    Method::POST,
                    "/v1/top_tenants",
                    Some(&json!({"order_by": "max_logical_size", "limit": 100})),
                )
                .await
                .expect("top_tenants");
            assert_eq!(status, 200, "{top}");
            let item = top["shards"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["id"] == shard.as_str())
                .unwrap_or_else(|| panic!("{shard} listed on {node}: {top}"));
            assert_eq!(item["max_logical_size"], json!(bytes), "{shard}: {item}");
        }
    }
    println!(
        "auto-split: every tenant at its shard count {:?} after the sizes were set",
        started.elapsed()
    );

    // Settled means settled: an observation window of a few background passes (one a
    // second) in which nothing splits further. Not a wait for a condition: a further split is
    // the bug this looks for.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for (tenant, _, count) in &cases {
        ensure_one_shard_count(&api, &sims, tenant, &shard_ids(tenant, *count))
            .await
            .unwrap_or_else(|e| panic!("{tenant}: {e:#}"));
    }
    api.consistency_check().await.expect("consistency");
    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
}
