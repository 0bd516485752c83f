//! A pageserver SIGKILLed in the middle of a shard split, after it created the children but
//! before it answered (its split answer is stalled), (a) coming back and (b) staying dead.
//!
//! In both cases the split request fails and the controller rolls the split back: the tenant
//! settles at its old shard count on the controller and on every running simulator, with no
//! child left anywhere (a restarted pageserver must not keep the children it made), and a
//! retried split succeeds and settles. In (a) the parent comes back in a newer generation (the
//! restarted node re-attached); in (b) the node goes Offline and the parent fails over to a live
//! node in a newer generation before the retried split places the children on live nodes;
//! when it finally returns, what it held of the aborted split is dropped and all settles again.
//! A bystander tenant settles each time; the histories of every simulator (also the dead one's
//! file) are safe at the end, and consistency_check passes.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use cluster_tests::client::http_client;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::splits::{expect_settled, new_shards};
use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};
use cluster_tests::{Client, Sims, StorageApi, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0x5bf2;

/// Children of the split in these tests.
const NEW_COUNT: u8 = 4;

/// A split request may take the controller's whole split timeout and more: the clients'
/// default 10 s is too short to see its answer.
const SPLIT_CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// Longer than the whole scenario: the simulator is killed while it stalls.
const STALL_MS: u64 = 120_000;

/// How long a simulator may take to record a split after the request was sent (the controller
/// first reconciles the parents and commits `BeginSplit`).
const SPLIT_RECORDED_DEADLINE: Duration = Duration::from_secs(30);

async fn set_split_behaviour(sims: &Sims, node: u64, behaviour: Value) {
    let (status, body) = sims
        .request(
            node,
            Method::PUT,
            "/debug/sim/split_behaviour",
            Some(&behaviour),
        )
        .await
        .expect("split behaviour answered");
    assert_eq!(status, 200, "split behaviour on sim {node}: {body}");
}

/// Children of `tenant` that `node` recorded as created by an accepted split.
fn recorded_children(sims: &Sims, node: u64, tenant: &str) -> anyhow::Result<Vec<String>> {
    Ok(sims
        .history(node)?
        .into_iter()
        .filter(|e| e.kind == "split" && e.accepted)
        .filter_map(|e| e.tenant_shard_id)
        .filter(|id| id.starts_with(tenant))
        .collect())
}

struct Killed {
    node: u64,
    generation: u32,
    status: u16,
    msg: String,
    answered_after_kill: Duration,
}

/// Creates `tenant` unsharded, starts its split to [`NEW_COUNT`] with the parent's pageserver
/// stalling the answer, and SIGKILLs that pageserver once it has recorded the children. Returns
/// once the split request has failed.
async fn kill_mid_split(
    api: &StorageApi,
    split_api: &StorageApi,
    sims: &Sims,
    tenant: &str,
    others: &[String],
) -> Killed {
    api.create_tenant(&tenant_create_body(tenant, 0, 1))
        .await
        .expect("create");
    let mut all = vec![tenant.to_string()];
    all.extend(others.iter().cloned());
    let settled = wait_settled(api, sims, &all, SETTLE_DEADLINE)
        .await
        .expect("settled before the split");
    let before = settled[tenant];
    let node = before.node;
    let children = shard_ids(tenant, NEW_COUNT);

    set_split_behaviour(sims, node, json!({"stall_ms": STALL_MS})).await;
    let split = {
        let split_api = split_api.clone();
        let tenant = tenant.to_string();
        tokio::spawn(async move { split_api.split_tenant(&tenant, NEW_COUNT, None).await })
    };
    let created = wait_until(
        &format!("sim {node} to record the split of {tenant}"),
        SPLIT_RECORDED_DEADLINE,
        async || {
            let created = recorded_children(sims, node, tenant)?;
            if split.is_finished() {
                bail!("the split answered before the simulator recorded it");
            }
            ensure!(!created.is_empty(), "no split recorded yet");
            Ok(created)
        },
    )
    .await
    .expect("the pageserver split and stalls");
    assert!(created.iter().all(|c| children.contains(c)), "{created:?}");
    assert!(
        !split.is_finished(),
        "the split must still wait for the stalled pageserver"
    );
    sims.kill(node);
    let killed = Instant::now();
    let answer = tokio::time::timeout(SPLIT_CALL_TIMEOUT, split)
        .await
        .expect("the split answers after the kill")
        .expect("split task")
        .expect("the split request got an answer");
    let answered_after_kill = killed.elapsed();
    assert!(
        answer.status >= 400,
        "a split whose pageserver died must fail: {answer:?}"
    );
    let msg = answer
        .msg()
        .unwrap_or_else(|| panic!("error without a msg: {answer:?}"));
    Killed {
        node,
        generation: before.generation,
        status: answer.status,
        msg,
        answered_after_kill,
    }
}

/// The retried split: 200 with the children, then settled.
async fn retry_and_settle(
    api: &StorageApi,
    split_api: &StorageApi,
    sims: &Sims,
    tenant: &str,
    others: &[String],
) -> (Duration, Duration) {
    let children = shard_ids(tenant, NEW_COUNT);
    let started = Instant::now();
    let r = split_api
        .split_tenant(tenant, NEW_COUNT, None)
        .await
        .expect("retried split answered");
    let took = started.elapsed();
    assert_eq!(r.status, 200, "retried split of {tenant}: {r:?}");
    assert_eq!(new_shards(&r.body), children);
    let (settled, settle) = expect_settled(
        api,
        sims,
        tenant,
        &children,
        others,
        &[],
        &format!("{tenant}: settles after the retried split"),
    )
    .await;
    let live = sims.live_ids();
    for c in &children {
        assert!(live.contains(&settled[c].node), "{c}: {:?}", settled[c]);
    }
    (took, settle)
}

/// Restarts simulator `node` and waits until every simulator is Active.
async fn restart_sim(sims: &Sims, api: &StorageApi, node: u64) {
    sims.restart(node).await.expect("the sim restarts");
    sims.wait_active(api, &sims.ids(), SETTLE_DEADLINE)
        .await
        .expect("every sim Active again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_pageserver_kill() {
    let fx = ControllerFixture::start(&[(1, "az-a"), (2, "az-a"), (3, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(fx.cluster.client(fx.follower));
    let split_api = StorageApi::new(Client::new(
        http_client(SPLIT_CALL_TIMEOUT),
        fx.cluster.url(fx.follower),
    ));
    let bystanders = vec![tenant_id(TAG, 1)];
    api.create_tenant(&tenant_create_body(&bystanders[0], 4, 1))
        .await
        .expect("create the bystander");
    let mut report = Vec::new();

    // (a) The pageserver comes back.
    let tenant = tenant_id(TAG, 10);
    let k = kill_mid_split(&api, &split_api, &fx.sims, &tenant, &bystanders).await;
    eprintln!(
        "(a) sim {} killed mid-split: answered {} {:?} {:.1?} after the kill",
        k.node, k.status, k.msg, k.answered_after_kill
    );
    let restarted = Instant::now();
    restart_sim(&fx.sims, &api, k.node).await;
    let settled = expect_settled(
        &api,
        &fx.sims,
        &tenant,
        std::slice::from_ref(&tenant),
        &bystanders,
        &[],
        "(a) settles rolled back with the sim back",
    )
    .await
    .0;
    let rolled_back = restarted.elapsed();
    let parent = settled[&tenant];
    assert!(
        parent.generation > k.generation,
        "(a) the parent's generation moved on with the re-attach: {parent:?} after {}",
        k.generation
    );
    let (retry, settle) = retry_and_settle(&api, &split_api, &fx.sims, &tenant, &bystanders).await;
    report.push(format!(
        "(a) sim {} back: split failed {} {:.1?} after the kill; rolled back in {:.1?} after the \
         restart (parent on {} gen {} -> {}); retry {:.1?}, settled {:.1?}",
        k.node,
        k.status,
        k.answered_after_kill,
        rolled_back,
        parent.node,
        k.generation,
        parent.generation,
        retry,
        settle
    ));

    // (b) The pageserver stays dead.
    let tenant = tenant_id(TAG, 20);
    let k = kill_mid_split(&api, &split_api, &fx.sims, &tenant, &bystanders).await;
    eprintln!(
        "(b) sim {} killed mid-split: answered {} {:?} {:.1?} after the kill",
        k.node, k.status, k.msg, k.answered_after_kill
    );
    let killed = Instant::now();
    wait_until(
        &format!("node {} Offline", k.node),
        SETTLE_DEADLINE,
        async || {
            let nodes = api.nodes().await?;
            let n = nodes
                .iter()
                .find(|n| n.id == k.node)
                .ok_or_else(|| anyhow::anyhow!("node {} not listed", k.node))?;
            ensure!(
                n.availability == "Offline",
                "node {}: {}",
                n.id,
                n.availability
            );
            Ok(())
        },
    )
    .await
    .expect("the dead node goes Offline");
    let settled = expect_settled(
        &api,
        &fx.sims,
        &tenant,
        std::slice::from_ref(&tenant),
        &bystanders,
        &[],
        "(b) settles rolled back on the live nodes",
    )
    .await
    .0;
    let rolled_back = killed.elapsed();
    let parent = settled[&tenant];
    assert_ne!(parent.node, k.node, "(b) the parent failed over");
    assert!(
        parent.generation > k.generation,
        "(b) the parent failed over in a newer generation: {parent:?} after {}",
        k.generation
    );
    let (retry, settle) = retry_and_settle(&api, &split_api, &fx.sims, &tenant, &bystanders).await;
    report.push(format!(
        "(b) sim {} dead: split failed {} {:.1?} after the kill; rolled back in {:.1?} (parent \
         on {} gen {} -> {}); retry {:.1?}, settled {:.1?}",
        k.node,
        k.status,
        k.answered_after_kill,
        rolled_back,
        parent.node,
        k.generation,
        parent.generation,
        retry,
        settle
    ));

    // The dead pageserver returns after the retried split: what it held of the aborted split
    // (the parent and the children it had made, in the old generation) is dropped on its
    // re-attach and activation, and everything settles again.
    let returned = Instant::now();
    restart_sim(&fx.sims, &api, k.node).await;
    expect_settled(
        &api,
        &fx.sims,
        &tenant,
        &shard_ids(&tenant, NEW_COUNT),
        &bystanders,
        &[],
        "(b) settles with the dead node back",
    )
    .await;
    report.push(format!(
        "(b) sim {} back after the retried split: settled with no strays in {:.1?}",
        k.node,
        returned.elapsed()
    ));

    history::ensure_safe(&fx.sims.all_history().expect("histories")).expect("history safe");
    api.consistency_check().await.expect("consistency");
    fx.cluster.check_no_crashes().expect("no replica crashed");
    fx.sims.check_no_crashes().expect("no simulator crashed");
    for line in &report {
        eprintln!("{line}");
    }
}
