//! Re-attach and its `mode` field: a pageserver holding one tenant attached and another as a
//! secondary is SIGKILLed. The survivor ends attached for both (the lost attachment in a newer
//! generation). The victim restarts from its data dir, re-attaches, and ends holding both as
//! `Secondary`: the re-attach answer itself demotes its old attachment (no `location_config`
//! call is needed or made), and the controller then agrees with what it holds. Last, a
//! re-attach from an unregistered node is 200 with no tenants and registers nothing.

use std::collections::BTreeMap;

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history::{self, Event};
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};
use cluster_tests::{StorageApi, wait_until};

const TAG: u32 = 0x4ea7;

/// Shard id -> (attached node, secondary nodes), from the controller.
async fn intents(api: &StorageApi, tenants: &[String]) -> BTreeMap<String, (u64, Vec<u64>)> {
    let mut out = BTreeMap::new();
    for tenant in tenants {
        let described = api.describe_tenant(tenant).await.expect("describe");
        for s in described.shards {
            let attached = s.node_attached.expect("attached");
            out.insert(s.tenant_shard_id, (attached, s.node_secondary));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reattach_mode() {
    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower: _,
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(leader));

    // One-shard Attached(1) tenants until a node holds one attached and another as secondary
    // (the scheduler spreads attachments, so two tenants normally do it).
    let mut tenants = Vec::new();
    let mut pick = None;
    for n in 1..=4 {
        let tenant = tenant_id(TAG, n);
        api.create_tenant(&tenant_create_body(&tenant, 1, 1))
            .await
            .expect("create");
        tenants.push(tenant);
        wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
            .await
            .expect("tenants settle");
        let placed = intents(&api, &tenants).await;
        pick = sims.ids().into_iter().find_map(|node| {
            let attached = placed.iter().find(|(_, (a, _))| *a == node)?;
            let secondary = placed.iter().find(|(_, (_, s))| s.contains(&node))?;
            Some((node, attached.0.clone(), secondary.0.clone()))
        });
        if pick.is_some() {
            break;
        }
    }
    let (victim, lost, kept) = pick.expect("a node with an attached and a secondary location");
    let survivor = sims
        .live_ids()
        .into_iter()
        .find(|n| *n != victim)
        .expect("two sims");
    let before = sims.locations(victim).await.expect("victim locations");
    assert_eq!(before[&lost].mode, "AttachedSingle");
    assert_eq!(before[&kept].mode, "Secondary");
    let lost_generation = before[&lost].generation.expect("generation");
    let kept_generation = sims.locations(survivor).await.expect("survivor")[&kept]
        .generation
        .expect("kept attached on the survivor");

    // Kill the victim: its attachment fails over to the survivor, which holds both attached.
    sims.kill(victim);
    let shards = [lost.clone(), kept.clone()];
    wait_until(
        "the survivor attached for both",
        SETTLE_DEADLINE,
        async || {
            let held = sims.locations(survivor).await?;
            for shard in &shards {
                let mode = held.get(shard).map(|l| l.mode.as_str());
                anyhow::ensure!(mode == Some("AttachedSingle"), "{shard}: {mode:?}");
            }
            let placed = intents(&api, &tenants).await;
            anyhow::ensure!(
                placed[&lost].0 == survivor,
                "intent of {lost}: {:?}",
                placed[&lost]
            );
            Ok(())
        },
    )
    .await
    .expect("failover to the survivor");
    let held = sims.locations(survivor).await.expect("survivor locations");
    let new_generation = held[&lost].generation.expect("generation");
    assert!(
        new_generation > lost_generation,
        "{lost}: failed over in generation {new_generation}, victim held {lost_generation}"
    );
    assert_eq!(
        held[&kept].generation,
        Some(kept_generation),
        "{kept}: the survivor's own attachment is untouched"
    );
    let nodes = api.nodes().await.expect("nodes");
    let victim_node = nodes
        .iter()
        .find(|n| n.id == victim)
        .expect("victim listed");
    assert_eq!(victim_node.availability, "Offline");
    let placed = intents(&api, &tenants).await;
    assert_eq!(
        placed[&lost],
        (survivor, vec![victim]),
        "the lost node stays the secondary"
    );

    // Restart the victim: the re-attach answer turns both into secondaries.
    let calls_before_restart = history::count_kind(
        &sims.history(victim).expect("victim history"),
        "location_config",
    );
    sims.restart(victim).await.expect("victim re-attaches");
    let after = sims.locations(victim).await.expect("victim locations");
    for shard in &shards {
        assert_eq!(
            after.get(shard).map(|l| (l.mode.as_str(), l.generation)),
            Some(("Secondary", None)),
            "{shard} on the restarted victim: {after:?}"
        );
    }
    let victim_history = sims.history(victim).expect("victim history");
    let reattached: Vec<&Event> = victim_history
        .iter()
        .filter(|e| e.kind == "reattach" && e.tenant_shard_id.is_some())
        .collect();
    for shard in &shards {
        let last = reattached
            .iter()
            .rfind(|e| e.tenant_shard_id.as_deref() == Some(shard.as_str()))
            .unwrap_or_else(|| panic!("no re-attach outcome for {shard}: {reattached:?}"));
        assert_eq!(
            (last.mode.as_deref(), last.generation, last.accepted),
            (Some("Secondary"), None, true),
            "{shard}: {last:?}"
        );
    }

    // The controller agrees once the victim is Active again, without calling it.
    sims.wait_active(&api, &sims.ids(), SETTLE_DEADLINE)
        .await
        .expect("victim Active again");
    let settled = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("everything settles");
    for shard in &shards {
        assert_eq!(settled[shard].node, survivor);
    }
    let placed = intents(&api, &tenants).await;
    assert_eq!(placed[&lost], (survivor, vec![victim]));
    assert_eq!(placed[&kept], (survivor, vec![victim]));
    let calls_after = history::count_kind(
        &sims.history(victim).expect("victim history"),
        "location_config",
    );
    assert_eq!(
        calls_after, calls_before_restart,
        "the restarted victim needed no location_config call"
    );

    // Only the new generation of the lost shard validates.
    let valid = api
        .validate(&[(lost.clone(), lost_generation)])
        .await
        .expect("validate old");
    assert_eq!(valid.get(&lost), Some(&false));
    let valid = api
        .validate(&[(lost.clone(), new_generation)])
        .await
        .expect("validate new");
    assert_eq!(valid.get(&lost), Some(&true));

    let all_shards: Vec<String> = tenants.iter().flat_map(|t| shard_ids(t, 1)).collect();
    assert!(all_shards.contains(&lost) && all_shards.contains(&kept));
    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");

    // A re-attach from a node that never registered (and sends no `register`) is 200 with an
    // empty list, as upstream: a real pageserver would retry a refusal forever at startup.
    let node_ids = |nodes: Vec<cluster_tests::api::NodeDescribeResponse>| {
        nodes.into_iter().map(|n| n.id).collect::<Vec<_>>()
    };
    let nodes_before = node_ids(api.nodes().await.expect("nodes"));
    let unregistered = serde_json::json!({"node_id": 4242, "empty_local_disk": false});
    let answer = api
        .send(
            reqwest::Method::POST,
            "/upcall/v1/re-attach",
            Some(&unregistered),
        )
        .await
        .expect("re-attach of an unregistered node");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body: serde_json::Value = serde_json::from_str(&answer.body).expect("json");
    assert_eq!(body, serde_json::json!({"tenants": []}));
    assert_eq!(
        node_ids(api.nodes().await.expect("nodes")),
        nodes_before,
        "nothing registered"
    );

    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}

/// A pageserver that lost its disk (data dir wiped) re-attaches with `empty_local_disk`: the
/// controller forgets what it observed there and sends every location the node should hold
/// again, attached ones in a new generation. (The wipe takes the history file too, so every
/// `location_config` in it was sent after the restart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_pageserver_is_sent_every_location_again() {
    let ControllerFixture {
        sims,
        cluster,
        follower,
        ..
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let tenants: Vec<String> = (10..14).map(|n| tenant_id(TAG, n)).collect();
    for tenant in &tenants {
        api.create_tenant(&tenant_create_body(tenant, 1, 1))
            .await
            .expect("tenant created");
    }
    let before = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("placed");
    let victim = 1;
    let held_before = sims.locations(victim).await.expect("listed");
    assert_eq!(
        held_before.len(),
        tenants.len(),
        "one location per tenant: {held_before:?}"
    );

    sims.kill(victim);
    std::fs::remove_dir_all(sims.data_dir(victim)).expect("data dir wiped");
    sims.restart(victim).await.expect("restarted empty");

    // It said its disk was empty; the controller sent every location back.
    wait_until(
        "the wiped node to hold everything again",
        SETTLE_DEADLINE,
        async || {
            let held = sims.locations(victim).await?;
            let modes: BTreeMap<_, _> = held
                .iter()
                .map(|(s, l)| (s.clone(), l.mode.clone()))
                .collect();
            let want: BTreeMap<_, _> = held_before
                .iter()
                .map(|(s, l)| (s.clone(), l.mode.clone()))
                .collect();
            anyhow::ensure!(modes == want, "holds {modes:?}, held {want:?}");
            Ok(())
        },
    )
    .await
    .expect("every location sent again");
    let after = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("settled");
    let events = sims.history(victim).expect("history");
    let reattached: Vec<&Event> = events.iter().filter(|e| e.kind == "reattach").collect();
    assert_eq!(reattached.len(), 1, "{reattached:?}");
    // Nothing local: the simulator sends `empty_local_disk: true` exactly then.
    let reason = reattached[0].reason.as_deref().unwrap_or_default();
    assert!(reason.ends_with("; 0 local"), "{reason}");
    let sent: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == "location_config" && e.accepted)
        .collect();
    for (shard, held) in &held_before {
        assert!(
            sent.iter()
                .any(|e| e.tenant_shard_id.as_deref() == Some(shard.as_str())),
            "{shard} was not sent again: {sent:?}"
        );
        if held.mode == "AttachedSingle" {
            assert_eq!(after[shard].node, victim, "{shard} moved instead");
            assert!(
                after[shard].generation > before[shard].generation,
                "{shard}: generation {} after, {} before",
                after[shard].generation,
                before[shard].generation
            );
        }
    }
    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}
