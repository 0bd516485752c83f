//! A rolling restart of every pageserver (upstream section 5.11: drain, restart, fill), one
//! after another, on a populated cluster: three replicas, three simulated pageservers in one
//! AZ, two 4-shard tenants and four 1-shard tenants (12 shards), every shard `Attached(1)`
//! with a timeline, and a compute hook recording every notification with its arrival time.
//!
//! For each pageserver in turn: `PUT .../drain` (202) -> its policy `PauseForRestart` with no
//! shard attached on it, by intent, as the controller observes it, and as the simulator itself
//! holds it -> SIGKILL of the simulator and a start from the same data dir (it re-attaches
//! before it serves) -> the node `Active` (policy and availability) -> `PUT .../fill` (202) ->
//! its policy back to `Active`, everything settled.
//!
//! Then, over the whole run, from the simulators' histories (1 ms timestamps, one clock):
//! 1. No shard was ever without an attached location once created: the longest interval with
//!    no node holding it `AttachedSingle`/`AttachedMulti`/`AttachedStale` (a killed simulator
//!    holds nothing until its re-attach) is exactly 0 ms for every shard. Every move is live:
//!    the origin stays `AttachedStale` until the destination answered `AttachedMulti`, and is
//!    demoted only after the destination's `AttachedSingle`, so causally no instant is
//!    uncovered. A bound of a few seconds would not do: a cold move in the simulator (detach,
//!    then attach elsewhere) takes tens of milliseconds, so only 0 tells the two apart.
//! 2. The generation checker passes (no generation attached on two nodes, generations and
//!    terms monotonic per node, no superseded generation validated).
//! 3. Every move (a new generation attached on another node) was followed by a notification
//!    naming the shard on its new node, received after the destination attached; and every
//!    notification named, for each shard, a node holding it attached when it arrived.
//! 4. At the end, once the controller is quiescent (`reconcile_all` answers 0, which also waits
//!    for the background optimiser's moves), every shard has exactly one attached location
//!    (`wait_settled`) and the attached shards per node differ by at most one (12 shards on 3
//!    nodes: 4 each). The fills alone do not guarantee that, as upstream's do not: a fill takes
//!    only shards with a secondary on its node, at most one per tenant here (`max(count / 3,
//!    1)`) and only from donors above the share, so it can stop short (with the optimiser
//!    off, a run ended 5/3/4). The balance comes from the background optimiser, which also
//!    moves secondaries off a node waiting for its restart and so shortens the next fill. How
//!    many shards each fill left on its node is printed, not asserted.
//!
//! The figures (total time, per-step times, gaps) are printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::moves::{self, ComputeHook, Outage};
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::stats::{Summary, ms};
use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};
use cluster_tests::{ClusterOptions, ControllerOptions, Sims, StorageApi, wait_until};
use reqwest::Method;
use serde_json::json;

const TAG: u32 = 0x7011;
const TL: &str = "70110000000000000000000000000001";
/// (tenant number, shard count).
const TENANTS: [(u32, u8); 6] = [(1, 4), (2, 4), (3, 1), (4, 1), (5, 1), (6, 1)];

async fn node_policy(api: &StorageApi, node: u64) -> anyhow::Result<(String, String)> {
    let n = api
        .nodes()
        .await?
        .into_iter()
        .find(|n| n.id == node)
        .ok_or_else(|| anyhow::anyhow!("node {node} not listed"))?;
    Ok((n.availability, n.scheduling))
}

async fn wait_policy(api: &StorageApi, node: u64, want: &str) {
    wait_until(
        &format!("node {node} scheduling {want}"),
        SETTLE_DEADLINE,
        async || {
            let (availability, scheduling) = node_policy(api, node).await?;
            anyhow::ensure!(
                scheduling == want && availability == "Active",
                "{availability} / {scheduling}"
            );
            Ok(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// Attached shards of `node`: by intent or observed by the controller, and as the simulator
/// holds them.
async fn attached_on(api: &StorageApi, sims: &Sims, node: u64) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = api
        .node_shards(node)
        .await?
        .shards
        .into_iter()
        .filter(|s| {
            s.is_intended_secondary == Some(false) || s.is_observed_secondary == Some(false)
        })
        .map(|s| format!("{} (controller)", s.tenant_shard_id))
        .collect();
    out.extend(
        sims.locations(node)
            .await?
            .into_iter()
            .filter(|(_, l)| moves::is_attached_mode(Some(&l.mode)))
            .map(|(id, l)| format!("{id} ({} on the simulator)", l.mode)),
    );
    Ok(out)
}

fn per_node(
    settled: &BTreeMap<String, cluster_tests::placement::Attachment>,
    nodes: &[u64],
) -> BTreeMap<u64, usize> {
    let mut counts: BTreeMap<u64, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    for a in settled.values() {
        *counts.entry(a.node).or_default() += 1;
    }
    counts
}

async fn send(api: &StorageApi, method: Method, path: &str) {
    let (status, body) = api.call(method.clone(), path, None).await;
    assert_eq!(status, 202, "{method} {path}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart() {
    let hook = ComputeHook::start().await.expect("compute hook");
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
            compute_hook_url: Some(hook.url().to_owned()),
            ..ControllerOptions::test_defaults()
        },
    )
    .await
    .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let nodes = sims.ids();

    // Populate: tenants, placed with their secondaries, a timeline each (on every shard).
    let tenants: Vec<String> = TENANTS.iter().map(|(n, _)| tenant_id(TAG, *n)).collect();
    let count_of: BTreeMap<String, u8> = TENANTS
        .iter()
        .map(|(n, c)| (tenant_id(TAG, *n), *c))
        .collect();
    for (t, count) in &count_of {
        api.create_tenant(&tenant_create_body(t, *count, 1))
            .await
            .expect("tenant created");
    }
    wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("placed");
    for t in &tenants {
        let (status, body) = api
            .call(
                Method::POST,
                &format!("/v1/tenant/{t}/timeline"),
                Some(&json!({"new_timeline_id": TL, "pg_version": 16})),
            )
            .await;
        assert_eq!(status, 201, "{t}: {body}");
    }
    let before = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("settled with timelines");
    let shards: Vec<String> = before.keys().cloned().collect();
    assert_eq!(shards.len(), 12, "{shards:?}");
    wait_until(
        "compute told of every tenant",
        SETTLE_DEADLINE,
        async || {
            for t in &tenants {
                anyhow::ensure!(!hook.for_tenant(t).is_empty(), "{t} not notified");
            }
            Ok(())
        },
    )
    .await
    .expect("every tenant notified");
    eprintln!("before: attached per node {:?}", per_node(&before, &nodes));

    // The rolling restart.
    let started_at = Utc::now();
    let started = Instant::now();
    let mut outages = Vec::new();
    let mut steps = Vec::new();
    for &node in &nodes {
        let t0 = Instant::now();
        send(&api, Method::PUT, &format!("/control/v1/node/{node}/drain")).await;
        wait_until(
            &format!("node {node} drained"),
            SETTLE_DEADLINE,
            async || {
                let (availability, scheduling) = node_policy(&api, node).await?;
                anyhow::ensure!(
                    scheduling == "PauseForRestart",
                    "{availability} / {scheduling}"
                );
                let attached = attached_on(&api, &sims, node).await?;
                anyhow::ensure!(attached.is_empty(), "still attached: {attached:?}");
                Ok(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let drained = t0.elapsed();

        // SIGKILL, then a start from the same data dir; it re-attaches before it serves.
        let t1 = Instant::now();
        let down = Utc::now();
        sims.kill(node);
        sims.restart(node).await.expect("simulator restarted");
        outages.push(Outage {
            node,
            from: down,
            to: Some(Utc::now()),
        });
        wait_policy(&api, node, "Active").await;
        let restarted = t1.elapsed();

        let t2 = Instant::now();
        send(&api, Method::PUT, &format!("/control/v1/node/{node}/fill")).await;
        wait_policy(&api, node, "Active").await;
        let settled = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
            .await
            .expect("settled after the fill");
        let filled = t2.elapsed();
        let counts = per_node(&settled, &nodes);
        eprintln!(
            "node {node}: drain {} ms, restart until Active {} ms, fill until settled {} ms; \
             attached per node {counts:?}",
            ms(drained),
            ms(restarted),
            ms(filled)
        );
        steps.push((node, drained, restarted, filled, counts[&node]));
    }
    let total = started.elapsed();

    // The controller quiescent (`reconcile_all` answers 0: no reconcile, migration or
    // optimiser move left), then every shard in one place.
    wait_until("the controller quiescent", SETTLE_DEADLINE, async || {
        let n = api.reconcile_all().await?;
        anyhow::ensure!(n == 0, "reconcile_all: {n}");
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let after = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("settled at the end");
    let counts = per_node(&after, &nodes);

    // 2. Generation safety over the whole run.
    let events = sims.all_history().expect("histories");
    history::ensure_safe(&events).expect("generation safety");

    // 1. Never unattached.
    let now = Utc::now();
    let holds: BTreeMap<&str, Vec<moves::Hold>> = shards
        .iter()
        .map(|s| (s.as_str(), moves::holds(&events, s, &outages)))
        .collect();
    let gaps: BTreeMap<&str, Duration> = holds
        .iter()
        .map(|(s, h)| (*s, moves::longest_gap(h, now)))
        .collect();
    let gap_summary = Summary::of(&gaps.values().copied().collect::<Vec<_>>()).expect("shards");
    let with_gap: Vec<_> = shards
        .iter()
        .filter_map(|s| {
            let g = moves::unattached_gaps(&holds[s.as_str()], now);
            (!g.is_empty()).then(|| (s.clone(), g))
        })
        .collect();

    // 3. Compute told of every move, after the destination attached, and of nothing else.
    let moved: Vec<moves::NewAttachment> = moves::new_attachments(&events)
        .into_iter()
        .filter(|m| m.at >= started_at && m.from.is_some())
        .collect();
    let tenant_of = |shard: &str| {
        tenants
            .iter()
            .find(|t| shard.starts_with(t.as_str()))
            .expect("a shard of one of the tenants")
            .clone()
    };
    wait_until("compute told of every move", SETTLE_DEADLINE, async || {
        let missing: Vec<String> = moved
            .iter()
            .filter(|m| {
                let t = tenant_of(&m.shard);
                !hook.for_tenant(&t).iter().any(|n| {
                    n.at >= m.at
                        && n.placements(count_of[&t])
                            .contains(&(m.shard.clone(), m.node))
                })
            })
            .map(|m| format!("{} on {} (generation {})", m.shard, m.node, m.generation))
            .collect();
        anyhow::ensure!(missing.is_empty(), "not notified: {missing:?}");
        for t in &tenants {
            let d = api.describe_tenant(t).await?;
            anyhow::ensure!(
                d.shards.iter().all(|s| !s.is_pending_compute_notification),
                "{t}: notification pending"
            );
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let received = hook.received();
    let mut misdirected = Vec::new();
    for n in &received {
        let t = n.body["tenant_id"].as_str().unwrap_or_default().to_owned();
        let Some(count) = count_of.get(&t) else {
            misdirected.push(format!("unknown tenant: {}", n.body));
            continue;
        };
        let placements = n.placements(*count);
        if placements.len() != usize::from((*count).max(1)) {
            misdirected.push(format!("not every shard named: {}", n.body));
        }
        for (shard, node) in placements {
            if !moves::held_attached_at(&holds[shard.as_str()], node, n.at) {
                misdirected.push(format!(
                    "{shard} named on {node} at {}, which did not hold it attached",
                    n.at
                ));
            }
        }
    }
    // The last notification of each tenant names where it ended.
    for t in &tenants {
        let last = hook.for_tenant(t).pop().expect("notified");
        for (shard, node) in last.placements(count_of[t]) {
            assert_eq!(
                after[&shard].node, node,
                "{t}: last notification {}",
                last.body
            );
        }
    }

    let moves_per_node: BTreeMap<u64, usize> = nodes
        .iter()
        .map(|n| (*n, moved.iter().filter(|m| m.from == Some(*n)).count()))
        .collect();
    eprintln!(
        "rolling restart of {} pageservers: {} ms in all; {} moves (off each node: \
         {moves_per_node:?}), {} notifications in all",
        nodes.len(),
        ms(total),
        moved.len(),
        received.len()
    );
    let share = shards.len() / nodes.len();
    for (node, drained, restarted, filled, held) in &steps {
        eprintln!(
            "  node {node}: drain {} ms, restart {} ms, fill {} ms; {held} attached after its \
             fill (share {share})",
            ms(*drained),
            ms(*restarted),
            ms(*filled)
        );
    }
    eprintln!(
        "longest unattached interval per shard ({} shards): max {} ms, median {} ms",
        gap_summary.count,
        ms(gap_summary.max),
        ms(gap_summary.p50)
    );
    eprintln!("after: attached per node {counts:?}");

    assert!(
        with_gap.is_empty(),
        "shards without an attached location for a while: {with_gap:?}"
    );
    assert!(
        misdirected.is_empty(),
        "notifications naming a node not holding the shard:\n{}",
        misdirected.join("\n")
    );
    for node in &nodes {
        assert!(
            moves_per_node[node] >= 1,
            "the drain of {node} moved nothing: {moves_per_node:?}"
        );
    }
    for (t, count) in &count_of {
        for shard in shard_ids(t, *count) {
            assert!(
                after.contains_key(&shard),
                "{shard} not attached at the end"
            );
        }
    }
    // 4. Balance restored, every shard attached once (`wait_settled` above).
    assert_eq!(after.len(), shards.len());
    let (min, max) = (
        counts.values().min().copied().unwrap_or(0),
        counts.values().max().copied().unwrap_or(0),
    );
    assert!(max - min <= 1, "attached per node {counts:?}");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}
