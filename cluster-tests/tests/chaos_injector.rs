//! The chaos injector (issue 11, item 7) soaking the migration path: with
//! `chaos_interval_ms = 300` the leader migrates a random shard gracefully every 300 ms while
//! the optimiser is on too. After at least eight live migrations (counted from the
//! pageservers' `AttachedMulti` records, bounded by a deadline):
//! - no shard was ever without an attached location (from the histories);
//! - every attachment stayed in its tenant's preferred AZ;
//! - the generation history checker passes and the replicas' state is consistent.

use std::time::Duration;

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::moves::{holds, longest_gap};
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{tenant_create_body, tenant_id};
use cluster_tests::{ClusterOptions, ControllerOptions, StorageApi, wait_until};

const TAG: u32 = 0xc4a0;
const MIGRATIONS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_migrations_keep_shards_attached_and_in_their_az() {
    let fx = ControllerFixture::start_with(
        &[(1, "az-a"), (2, "az-a"), (3, "az-a"), (4, "az-b")],
        SETTLE_DEADLINE,
        ClusterOptions::default(),
        ControllerOptions {
            chaos_interval_ms: Some(300),
            ..ControllerOptions::test_defaults()
        },
    )
    .await
    .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(fx.cluster.client(fx.follower));
    let tenants: Vec<String> = (0..4).map(|n| tenant_id(TAG, n)).collect();
    for (i, t) in tenants.iter().enumerate() {
        api.create_tenant_with_retry(
            &tenant_create_body(t, if i % 2 == 0 { 0 } else { 2 }, 1),
            SETTLE_DEADLINE,
        )
        .await
        .expect("created");
    }
    wait_settled(&api, &fx.sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("placed");
    let live_migrations = || -> anyhow::Result<usize> {
        let events = fx.sims.all_history()?;
        Ok(events
            .iter()
            .filter(|e| e.accepted && e.mode.as_deref() == Some("AttachedMulti"))
            .count())
    };
    wait_until(
        "the injector's live migrations",
        Duration::from_secs(90),
        async || {
            let n = live_migrations()?;
            anyhow::ensure!(n >= MIGRATIONS, "{n} so far");
            Ok(n)
        },
    )
    .await
    .expect("chaos migrates");

    let events = fx.sims.all_history().expect("histories");
    let now = chrono::Utc::now();
    for t in &tenants {
        let d = api.describe_tenant(t).await.expect("describe");
        let az = d.shards[0].preferred_az_id.clone().expect("a preferred AZ");
        for s in &d.shards {
            let shard = s.tenant_shard_id.to_string();
            let gap = longest_gap(&holds(&events, &shard, &[]), now);
            assert_eq!(gap, Duration::ZERO, "{shard} was without an attachment");
            // Attached in the home AZ at every accepted attach of its history.
            for e in events.iter().filter(|e| {
                e.accepted
                    && e.kind == "location_config"
                    && e.tenant_shard_id.as_deref() == Some(shard.as_str())
                    && e.mode.as_deref() == Some("AttachedSingle")
            }) {
                assert_eq!(
                    fx.sims.az(e.node_id),
                    az,
                    "{shard} attached outside {az}: {e:?}"
                );
            }
        }
    }
    history::ensure_safe(&events).expect("history safe");
    api.consistency_check().await.expect("consistency");
    fx.cluster.check_no_crashes().expect("no replica crashed");
    fx.sims.check_no_crashes().expect("no simulator crashed");
}
