//! Node failure: a pageserver that stops answering heartbeats goes Offline after
//! `max_offline`, and each shard attached there moves to its secondary in a strictly newer
//! generation, while shards attached elsewhere keep theirs. Then an operator's
//! `PUT /control/v1/node/:id/config {"availability":"Offline"}` fails a healthy node over at
//! once (heartbeats alone would never move anything off a live node); when it answers the next
//! heartbeat it comes back as the secondary of what it lost.

use std::collections::BTreeMap;
use std::time::Instant;

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{Attachment, SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{tenant_create_body, tenant_id};
use cluster_tests::{ClusterOptions, ControllerOptions, StorageApi, wait_until};
use reqwest::Method;
use serde_json::json;

const TAG: u32 = 0x0ff1;

/// Shard id -> (attached node, secondary nodes), from the controller.
async fn intents(api: &StorageApi, tenants: &[String]) -> BTreeMap<String, (u64, Vec<u64>)> {
    let mut out = BTreeMap::new();
    for tenant in tenants {
        let described = api.describe_tenant(tenant).await.expect("describe");
        for s in described.shards {
            out.insert(
                s.tenant_shard_id,
                (s.node_attached.expect("attached"), s.node_secondary),
            );
        }
    }
    out
}

/// The node with the most attachments among `candidates`.
fn busiest(settled: &BTreeMap<String, Attachment>, candidates: &[u64]) -> u64 {
    *candidates
        .iter()
        .max_by_key(|n| settled.values().filter(|a| a.node == **n).count())
        .expect("candidates")
}

/// Checks a failover away from `lost_node`: every shard attached there before now is attached
/// on its former secondary in a newer generation; the others kept node and generation.
fn check_failover(
    lost_node: u64,
    before: &BTreeMap<String, Attachment>,
    intents_before: &BTreeMap<String, (u64, Vec<u64>)>,
    after: &BTreeMap<String, Attachment>,
) -> usize {
    let mut moved = 0;
    for (shard, old) in before {
        let new = after[shard];
        if old.node == lost_node {
            moved += 1;
            let secondaries = &intents_before[shard].1;
            assert!(
                secondaries.contains(&new.node),
                "{shard}: moved to {} instead of its secondary {secondaries:?}",
                new.node
            );
            assert!(
                new.generation > old.generation,
                "{shard}: generation {} after {}",
                new.generation,
                old.generation
            );
        } else {
            assert_eq!(new, *old, "{shard}: not on the lost node, left alone");
        }
    }
    moved
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_failure() {
    // It checks that exactly the lost node's shards move, to their secondaries; the optimiser
    // may move others meanwhile (tests/optimiser.rs covers it).
    let controller = ControllerOptions::without_optimiser();
    // The last heartbeat answered before the kill may be up to one interval old.
    let earliest_failover = controller.max_offline_ms.expect("set")
        - 2 * controller.heartbeat_interval_ms.expect("set");
    let ControllerFixture {
        sims,
        cluster,
        leader: _,
        follower,
    } = ControllerFixture::start_with(
        &[(1, "az-a"), (2, "az-a"), (3, "az-b")],
        SETTLE_DEADLINE,
        ClusterOptions::default(),
        controller.clone(),
    )
    .await
    .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let tenants: Vec<String> = (1..=2).map(|n| tenant_id(TAG, n)).collect();
    for tenant in &tenants {
        api.create_tenant(&tenant_create_body(tenant, 4, 1))
            .await
            .expect("create");
    }
    let before = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("tenants settle");
    let intents_before = intents(&api, &tenants).await;

    // 1. Heartbeats stop: SIGKILL the busiest node.
    let victim = busiest(&before, &sims.ids());
    sims.kill(victim);
    let killed = Instant::now();
    let after = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("failover settles");
    let failover = killed.elapsed();
    let moved = check_failover(victim, &before, &intents_before, &after);
    assert!(moved > 0, "the victim held attachments");
    assert!(
        failover.as_millis() >= u128::from(earliest_failover),
        "failed over after {failover:?}, before max_offline passed"
    );
    eprintln!("node_failure: {moved} shards failed over {failover:?} after SIGKILL");
    let nodes = api.nodes().await.expect("nodes");
    let state = nodes.iter().find(|n| n.id == victim).expect("listed");
    assert_eq!(state.availability, "Offline");
    // Strictly increasing generations in the simulators' own records.
    let generations = history::attach_generations(&sims.all_history().expect("histories"));
    for (shard, old) in &before {
        if old.node != victim {
            continue;
        }
        let seen = &generations[shard];
        let newest = *seen.keys().next_back().expect("attached at least once");
        assert_eq!(newest, after[shard].generation);
        assert_eq!(
            seen[&newest].iter().copied().collect::<Vec<_>>(),
            vec![after[shard].node]
        );
        let on_victim: Vec<u32> = seen
            .iter()
            .filter(|(_, nodes)| nodes.contains(&victim))
            .map(|(g, _)| *g)
            .collect();
        assert!(
            on_victim.iter().all(|g| *g < newest),
            "{shard}: victim generations {on_victim:?}, newest {newest}"
        );
        let valid = api
            .validate(&[(shard.clone(), old.generation)])
            .await
            .expect("validate");
        assert_eq!(
            valid.get(shard),
            Some(&false),
            "{shard}: superseded generation"
        );
    }

    // The victim comes back: it re-attaches as the secondary of what it lost.
    sims.restart(victim).await.expect("victim restarts");
    sims.wait_active(&api, &sims.ids(), SETTLE_DEADLINE)
        .await
        .expect("victim Active");
    let settled = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("settles with the victim back");
    assert_eq!(settled, after, "the returning node changes no attachment");
    let held = sims.locations(victim).await.expect("victim locations");
    for (shard, old) in &before {
        if old.node == victim {
            assert_eq!(
                held.get(shard).map(|l| l.mode.as_str()),
                Some("Secondary"),
                "{shard} on the returned victim"
            );
        }
    }

    // 2. An operator marks a live node Offline: it fails over at once.
    let intents_before = intents(&api, &tenants).await;
    let others: Vec<u64> = sims.ids().into_iter().filter(|n| *n != victim).collect();
    let drained = busiest(&settled, &others);
    let raw = api
        .send(
            Method::PUT,
            &format!("/control/v1/node/{drained}/config"),
            Some(&json!({"node_id": drained, "availability": "Offline"})),
        )
        .await
        .expect("node config answered");
    assert_eq!((raw.status, raw.body.as_str()), (200, "null"));
    let marked = Instant::now();
    wait_until(
        "no attachment left on the node marked Offline",
        SETTLE_DEADLINE,
        async || {
            let placed = intents(&api, &tenants).await;
            let left: Vec<&String> = placed
                .iter()
                .filter(|(_, (a, _))| *a == drained)
                .map(|(s, _)| s)
                .collect();
            anyhow::ensure!(left.is_empty(), "still attached on {drained}: {left:?}");
            Ok(())
        },
    )
    .await
    .expect("operator failover");
    let intent_moved = marked.elapsed();
    let final_settled = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("operator failover settles");
    let moved = check_failover(drained, &settled, &intents_before, &final_settled);
    assert!(moved > 0, "the drained node held attachments");
    eprintln!(
        "node_failure: operator Offline moved {moved} intents in {intent_moved:?}, \
         settled after {:?}",
        marked.elapsed()
    );
    // Alive, it answered the next heartbeat and holds what it lost as a secondary.
    sims.wait_active(&api, &sims.ids(), SETTLE_DEADLINE)
        .await
        .expect("the drained node is Active again");
    let held = sims.locations(drained).await.expect("drained locations");
    for (shard, old) in &settled {
        if old.node == drained {
            assert_eq!(
                held.get(shard).map(|l| l.mode.as_str()),
                Some("Secondary"),
                "{shard} on the node marked Offline"
            );
        }
    }

    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}
