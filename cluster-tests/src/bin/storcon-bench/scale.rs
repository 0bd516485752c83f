//! Many shards over several simulators, measured phase by phase (issue 13, item 4):
//!
//! 1. creation: `N / per_tenant` tenants of `Attached(0)` created through the leader by
//!    `concurrency` clients (each create waits for its shards to be attached), spread by the
//!    scheduler over the simulators; the rate, and the leader's RSS growth per shard;
//! 2. an idle background pass: the leader's `storcon_background_pass_seconds` over the passes
//!    that ran after creation settled (the scan of every shard for dirty ones, scheduling, the
//!    optimiser);
//! 3. SIGKILL of the leader: the time until a write through a survivor is acknowledged, and the
//!    new leader's own `storcon_startup_reconcile_seconds` (abort of recorded splits, the
//!    observed-state scan of every simulator, scheduling, reconciles queued);
//! 4. SIGKILL of the simulator holding the most attached shards: the time until every one of
//!    them is `AttachedSingle` on a live simulator in a newer generation, against `max_offline`;
//! 5. the re-attach answer for the simulator holding the most attached shards then (stopped
//!    first, so nothing else touches its shards), timed `reattaches` times.
//!
//! The controller runs with its production timings (heartbeat 1 s, `max_offline` 10 s).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use cluster_tests::client::http_client;
use cluster_tests::sims::SimLocation;
use cluster_tests::sims::Sims;
use cluster_tests::stats::{Summary, ms};
use cluster_tests::storage_api::StorageApi;
use cluster_tests::wait::wait_until_every;
use cluster_tests::{Cluster, deadline, prom, wait_until};
use futures::StreamExt;

use crate::rss_kib;

pub struct Plan {
    pub shards: usize,
    pub per_tenant: u8,
    pub sims: u64,
    pub concurrency: usize,
    pub reattaches: usize,
    pub max_offline: Duration,
}

/// How long any one phase may take before the run is abandoned.
const PHASE_DEADLINE: Duration = Duration::from_secs(600);
/// Between two polls of a phase's condition. Each poll lists every simulator's locations or
/// scrapes the leader's metrics (which counts every shard): polled as often as the harness's
/// usual 50 ms, the benchmark would mostly measure its own polling. A phase's time is therefore
/// known to within this much.
const POLL: Duration = Duration::from_millis(500);
/// Between two scrapes of the leader's metrics while timing background passes: a scrape
/// counts every shard, and the passes come every `background_reconcile_ms` (2 s here).
const IDLE_POLL: Duration = Duration::from_millis(1500);

/// `wait_until` polling every [`POLL`], for at most [`PHASE_DEADLINE`].
async fn poll_until<T>(
    what: &str,
    check: impl AsyncFnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    wait_until_every(what, PHASE_DEADLINE, POLL, check).await
}

/// How many shards each simulator holds `AttachedSingle`, with their generations.
fn attached_by_node(
    view: &BTreeMap<String, BTreeMap<u64, SimLocation>>,
) -> BTreeMap<u64, Vec<(String, u32)>> {
    let mut per_sim: BTreeMap<u64, Vec<(String, u32)>> = BTreeMap::new();
    for (shard, locs) in view {
        for (node, l) in locs {
            if l.mode == "AttachedSingle" {
                per_sim
                    .entry(*node)
                    .or_default()
                    .push((shard.clone(), l.generation.unwrap_or(0)));
            }
        }
    }
    per_sim
}

pub async fn run(cluster: &Cluster, plan: &Plan) -> anyhow::Result<()> {
    ensure!(
        plan.sims >= 2,
        "--sims must be at least 2 (a killed one fails over)"
    );
    let leader = cluster.wait_for_leader(deadline::ELECTION).await?;
    let specs: Vec<(u64, &str)> = (1..=plan.sims)
        .map(|i| (i, if i % 2 == 1 { "az-a" } else { "az-b" }))
        .collect();
    let sims = Sims::start(&cluster.url(leader), &specs).await?;
    let api = StorageApi::new(cluster.client(leader));
    let ids: Vec<u64> = specs.iter().map(|(i, _)| *i).collect();
    sims.wait_active(&api, &ids, Duration::from_secs(60))
        .await?;
    let pid = cluster.pid(leader).context("leader pid")?;
    let rss_before = rss_kib(pid)?;

    // 1. Creation.
    let http = http_client(Duration::from_secs(120));
    let base = cluster.url(leader);
    let tenants = plan.shards.div_ceil(usize::from(plan.per_tenant.max(1)));
    let total = tenants * usize::from(plan.per_tenant.max(1));
    let started = Instant::now();
    let created: Vec<anyhow::Result<()>> = futures::stream::iter(0..tenants)
        .map(|i| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let body = serde_json::json!({
                    "new_tenant_id": format!("{:032x}", 0x5ca1_e000_u128 + i as u128),
                    "shard_parameters": {"count": plan.per_tenant, "stripe_size": 2048},
                    "placement_policy": {"Attached": 0},
                });
                let resp = http
                    .post(format!("{base}/v1/tenant"))
                    .json(&body)
                    .send()
                    .await?;
                if resp.status().as_u16() != 201 {
                    bail!("create: {} {}", resp.status(), resp.text().await?);
                }
                Ok(())
            }
        })
        .buffer_unordered(plan.concurrency)
        .collect()
        .await;
    created.into_iter().collect::<anyhow::Result<()>>()?;
    let created_in = started.elapsed();
    let rss_after = rss_kib(pid)?;
    println!(
        "scale: created {tenants} tenants, {total} shards over {} simulators in {:.1} s: \
         {:.0} shards/s",
        plan.sims,
        created_in.as_secs_f64(),
        total as f64 / created_in.as_secs_f64()
    );
    println!(
        "scale: leader RSS {rss_before} KiB -> {rss_after} KiB: {:.0} bytes per shard",
        (rss_after.saturating_sub(rss_before) * 1024) as f64 / total as f64
    );

    // Everything the simulators hold, once every shard is attached somewhere.
    let view = poll_until("every shard attached on a simulator", async || {
        let view = sims.view().await?;
        let attached = view
            .values()
            .filter(|locs| locs.values().any(|l| l.mode == "AttachedSingle"))
            .count();
        ensure!(attached == total, "{attached} of {total} attached");
        Ok(view)
    })
    .await?;
    let per_sim = attached_by_node(&view);
    println!(
        "scale: attached per simulator: {:?}",
        per_sim
            .iter()
            .map(|(n, s)| (*n, s.len()))
            .collect::<Vec<_>>()
    );

    // 2. Idle background passes: once the optimiser has stopped moving shards (it moves a few
    //    per pass after a bulk creation), passes that changed nothing are timed.
    let metrics_http = http_client(Duration::from_secs(10));
    let stats = async || -> anyhow::Result<(f64, f64, f64)> {
        let e = prom::scrape(&metrics_http, &base).await?;
        Ok((
            e.sum("storcon_background_pass_seconds_count", &[]),
            e.sum("storcon_background_pass_seconds_sum", &[]),
            e.sum("storage_controller_schedule_optimization_total", &[])
                + e.sum("storage_controller_schedule_optimization", &[]),
        ))
    };
    let mut last = stats().await?;
    let mut idle: Vec<f64> = Vec::new();
    let mut busy = 0u32;
    let idle_started = Instant::now();
    while idle.len() < 3 {
        ensure!(
            idle_started.elapsed() < PHASE_DEADLINE,
            "no idle background pass within {PHASE_DEADLINE:?} ({busy} passes moved shards)"
        );
        tokio::time::sleep(IDLE_POLL).await;
        let now = stats().await?;
        if now.0 == last.0 + 1.0 {
            if now.2 == last.2 {
                idle.push(now.1 - last.1);
            } else {
                busy += 1;
            }
        }
        // More than one pass between two polls: not attributable, skipped.
        last = now;
    }
    println!(
        "scale: idle background pass at {total} shards (no optimiser move): {} ms; {busy} \
         earlier passes moved shards",
        idle.iter()
            .map(|s| format!("{:.1}", s * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // 3. Leader SIGKILL.
    let via = cluster.live_other_than(leader);
    let survivor = cluster.client(via);
    cluster.kill(leader);
    let killed = Instant::now();
    let node = cluster_tests::NodeRegisterRequest::fake(900_001);
    wait_until("a write through a survivor", PHASE_DEADLINE, async || {
        survivor.register_node(&node).await?;
        Ok(())
    })
    .await?;
    let write_after = killed.elapsed();
    let new_leader = cluster
        .wait_for_new_leader(leader, deadline::ELECTION)
        .await?;
    let startup = poll_until("the new leader's startup", async || {
        let e = prom::scrape(&metrics_http, &cluster.url(new_leader)).await?;
        e.value("storcon_startup_reconcile_seconds", &[])
            .filter(|v| *v > 0.0)
            .context("not started yet")
    })
    .await?;
    let serving_after = killed.elapsed();
    println!(
        "scale: leader SIGKILL at {total} shards: first acknowledged write after {} ms; new \
         leader {new_leader} finished its startup (its own {:.0} ms) and was seen serving \
         {} ms after the kill",
        ms(write_after),
        startup * 1000.0,
        ms(serving_after)
    );
    cluster.restart(leader)?;
    cluster.wait_converged(deadline::CONVERGE).await?;
    // The fake node of the write above is never heard from; drop it so it plays no part.
    let dropped = http
        .post(format!(
            "{}/debug/v1/node/900001/drop",
            cluster.url(new_leader)
        ))
        .send()
        .await?;
    ensure!(
        dropped.status().is_success(),
        "drop the fake node: {}",
        dropped.status()
    );

    // 4. Pageserver SIGKILL.
    let (victim, shards) = per_sim
        .iter()
        .max_by_key(|(_, s)| s.len())
        .map(|(n, s)| (*n, s.clone()))
        .context("no simulator holds shards")?;
    sims.kill(victim);
    let killed = Instant::now();
    poll_until(
        "every shard of the killed simulator attached elsewhere",
        async || {
            let view = sims.view().await?;
            let missing = shards
                .iter()
                .filter(|(id, generation)| {
                    !view.get(id).is_some_and(|locs| {
                        locs.iter().any(|(n, l)| {
                            *n != victim
                                && l.mode == "AttachedSingle"
                                && l.generation.unwrap_or(0) > *generation
                        })
                    })
                })
                .count();
            ensure!(
                missing == 0,
                "{missing} of {} not attached elsewhere",
                shards.len()
            );
            Ok(())
        },
    )
    .await?;
    let failed_over = killed.elapsed();
    println!(
        "scale: simulator {victim} holding {} attached shards SIGKILLed: all attached elsewhere \
         after {} ms (max_offline {} ms, goal max_offline + 2000 ms)",
        shards.len(),
        ms(failed_over),
        plan.max_offline.as_millis()
    );

    // 5. Re-attach answer of the simulator holding the most attached shards now.
    let (busiest, held) = attached_by_node(&sims.view().await?)
        .into_iter()
        .map(|(n, s)| (n, s.len()))
        .max_by_key(|(_, c)| *c)
        .context("no simulator holds shards")?;
    sims.kill(busiest);
    let mut samples = Vec::new();
    for _ in 0..plan.reattaches {
        let t = Instant::now();
        let resp = http
            .post(format!("{}/upcall/v1/re-attach", cluster.url(new_leader)))
            .json(&serde_json::json!({"node_id": busiest}))
            .send()
            .await?;
        let status = resp.status();
        let answer: serde_json::Value = resp.json().await?;
        let elapsed = t.elapsed();
        let n = answer["tenants"].as_array().map_or(0, Vec::len);
        ensure!(
            status.is_success() && n >= held,
            "re-attach answered {status} with {n} shards, the simulator held {held}"
        );
        samples.push(elapsed);
    }
    let s = Summary::of(&samples).context("no samples")?;
    println!(
        "scale: re-attach answer for simulator {busiest} holding {held} attached shards \
         ({total} in all): {s}"
    );
    Ok(())
}
