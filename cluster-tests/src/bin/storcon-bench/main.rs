//! Benchmarks of a three-replica storcon cluster on loopback.
//!
//! Build the server and the simulator in the same profile first, then run, e.g.:
//!
//! ```text
//! cargo build --release -p storcon -p pageserver-sim
//! cargo run --release -p cluster-tests --bin storcon-bench -- failover --kills 10
//! cargo run --release -p cluster-tests --bin storcon-bench -- latency --writes 500
//! cargo run --release -p cluster-tests --bin storcon-bench -- throughput --clients 64 --seconds 10
//! cargo run --release -p cluster-tests --bin storcon-bench -- scale --shards 5000
//! cargo run --release -p cluster-tests --bin storcon-bench -- split --runs 10 --bystanders 20
//! cargo run --release -p cluster-tests --bin storcon-bench -- reconcile-failover --kills 5
//! cargo run --release -p cluster-tests --bin storcon-bench -- timeline-create --runs 10
//! cargo run --release -p cluster-tests --bin storcon-bench -- migrate --runs 10
//! cargo run --release -p cluster-tests --bin storcon-bench -- gen-commit --clients 1,64
//! cargo run --release -p cluster-tests --bin storcon-bench -- compare --runs 3
//! cargo run --release -p cluster-tests --bin storcon-bench -- soak --seconds 600
//! cargo run --release -p cluster-tests --bin storcon-bench -- soak --seconds 300 --writers 64
//! ```
//!
//! Every run is bounded (`--max-seconds`) and kills its replicas on every exit path, Ctrl-C
//! included.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use cluster_tests::client::http_client;
use cluster_tests::config::ControllerOptions;
use cluster_tests::moves::ComputeHook;
use cluster_tests::sims::Sims;
use cluster_tests::stats::{Summary, ms};
use cluster_tests::storage_api::StorageApi;
use cluster_tests::{Client, Cluster, ClusterOptions, NodeRegisterRequest, RaftOptions, deadline};

mod scale;
mod soak;
mod write_path;

#[derive(Parser)]
#[command(about = "Benchmarks of a three-replica storcon cluster on 127.0.0.1")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct Common {
    /// Abort the whole run after this many seconds.
    #[arg(long, global = true, default_value_t = 600)]
    max_seconds: u64,
    /// RUST_LOG of the replicas (their logs go to files in a temporary directory).
    #[arg(long, global = true, default_value = "warn")]
    rust_log: String,
    #[arg(long, global = true, default_value_t = 50)]
    heartbeat_ms: u64,
    #[arg(long, global = true, default_value_t = 200)]
    election_min_ms: u64,
    #[arg(long, global = true, default_value_t = 400)]
    election_max_ms: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Kill the leader repeatedly; measure the time until a write through a survivor succeeds.
    Failover {
        #[arg(long, default_value_t = 10)]
        kills: u32,
        /// Client retry interval.
        #[arg(long, default_value_t = 10)]
        retry_ms: u64,
    },
    /// Sequential writes to the leader.
    Latency {
        #[arg(long, default_value_t = 500)]
        writes: u32,
    },
    /// Generation commits: re-attach upcalls of fake nodes holding one shard each (one Raft
    /// entry per call, no pageserver traffic; heartbeats off). See `write_path.rs`.
    GenCommit(WriteArgs),
    /// `gen-commit` beside a three-member etcd on loopback (puts through its JSON gateway),
    /// alternating the two for every client count and run. Needs `etcd` (Debian's
    /// `etcd-server`) or `$ETCD_BIN`.
    Compare(WriteArgs),
    /// Election soak at the default Raft timings: fails if any replica's term or leader changes.
    /// `--writers 0` is the idle soak; writers run the `gen-commit` workload.
    Soak {
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        #[arg(long, default_value_t = 0)]
        writers: usize,
    },
    /// Concurrent node registrations for a fixed time. Each registers a new node (a Raft entry);
    /// heartbeats are off for the run, so the leader does not poll the nodes it accumulates.
    Throughput {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Send the writes to a follower, which forwards them to the leader.
        #[arg(long)]
        via_follower: bool,
    },
    /// Many shards over several simulators at the production controller timings: creation
    /// rate, leader RSS per shard, an idle background pass, leader and simulator SIGKILL, the
    /// re-attach answer of a busy simulator. See `scale.rs`.
    Scale {
        #[arg(long, default_value_t = 5000)]
        shards: usize,
        #[arg(long, default_value_t = 8)]
        shards_per_tenant: u8,
        #[arg(long, default_value_t = 10)]
        sims: u64,
        /// Tenant creations in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Re-attach calls to time.
        #[arg(long, default_value_t = 5)]
        reattaches: usize,
    },
    /// Three simulators; kill the leader and create a tenant through a survivor (retrying while
    /// there is no leader): time from the kill until a simulator accepts the new leader's first
    /// `location_config`.
    ReconcileFailover {
        #[arg(long, default_value_t = 5)]
        kills: u32,
    },
    /// Three simulators (two AZs) with bystander tenants; split fresh 4-shard `Attached(1)`
    /// tenants to 8 shards: time to the API's answer and until every simulator agrees.
    Split {
        #[arg(long, default_value_t = 10)]
        runs: u32,
        /// 4-shard `Attached(1)` tenants created first and left alone.
        #[arg(long, default_value_t = 20)]
        bystanders: u32,
    },
    /// Simulators in one AZ and settled `Attached(1)` tenants of several shard counts; create
    /// fresh timelines one after another (`POST /v1/tenant/:id/timeline`, which fans out to every
    /// shard) and time each answer.
    TimelineCreate {
        /// Timelines created, and timed, per shard count.
        #[arg(long, default_value_t = 10)]
        runs: u32,
        /// One tenant per shard count.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        shard_counts: Vec<u8>,
        /// pageserver-sim processes, all in `az-a`.
        #[arg(long, default_value_t = 4)]
        sims: u64,
    },
    /// Three simulators in one AZ and a 1-shard `Attached(1)` tenant with timelines; prewarmed
    /// migrations of its shard (`PUT /control/v1/tenant/:id/migrate`), each to the node holding
    /// nothing of it, timed phase by phase from the simulators' histories and a compute hook.
    Migrate {
        #[arg(long, default_value_t = 10)]
        runs: u32,
        /// Timelines of the tenant (10 layers each in the heatmap the destination downloads).
        #[arg(long, default_value_t = 3)]
        timelines: u32,
        /// The simulators' secondary download rate.
        #[arg(long, default_value_t = 20)]
        download_ms_per_layer: u64,
        /// How long after an attach the simulators' timelines take to catch up (`wait_lsn`).
        #[arg(long, default_value_t = 0)]
        catch_up_ms: u64,
    },
}

const HOUR_MS: u64 = 3_600_000;

/// Client counts and windows of `gen-commit` and `compare`.
#[derive(Args)]
struct WriteArgs {
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    clients: Vec<usize>,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

/// Unique pageserver ids for the whole run.
static NEXT_NODE: AtomicU64 = AtomicU64::new(1);

fn next_node() -> NodeRegisterRequest {
    NodeRegisterRequest::fake(NEXT_NODE.fetch_add(1, Ordering::Relaxed))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A soak's own length extends the bound (with time to start and check the cluster).
    let max_seconds = match cli.cmd {
        Cmd::Soak { seconds, .. } => cli.common.max_seconds.max(seconds + 120),
        _ => cli.common.max_seconds,
    };
    let limit = Duration::from_secs(max_seconds);
    // Dropping `run` (deadline or Ctrl-C) drops its `Cluster`, which kills the replicas.
    tokio::select! {
        result = tokio::time::timeout(limit, run(&cli)) => match result {
            Ok(result) => result,
            Err(_) => bail!("run exceeded its bound of {max_seconds} s (--max-seconds)"),
        },
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    if let Cmd::TimelineCreate {
        runs,
        ref shard_counts,
        sims,
    } = cli.cmd
    {
        check_timeline_flags(runs, shard_counts, sims)?;
    }
    let opts = ClusterOptions {
        replicas: 3,
        raft: RaftOptions {
            heartbeat_interval_ms: Some(cli.common.heartbeat_ms),
            election_timeout_min_ms: Some(cli.common.election_min_ms),
            election_timeout_max_ms: Some(cli.common.election_max_ms),
            ..RaftOptions::default()
        },
        rust_log: cli.common.rust_log.clone(),
        tls: None,
    };
    // The scale run: one simulator absorbs thousands of location changes, each rewriting its
    // locations file, so a heartbeat can wait behind them; give it a long offline grace so the
    // measurement is not a failover.
    let controller = match cli.cmd {
        // The binary's own timings (the scale run measures failover at them), but a background
        // pass every 2 s instead of 20 s, so that idle passes come soon after creation.
        Cmd::Scale { .. } => Some(ControllerOptions {
            background_reconcile_ms: Some(2000),
            ..ControllerOptions::default()
        }),
        // Write-path runs: the startup round finds no node, the next is an hour away, so the
        // nodes the benchmark registers are never called (gen-commit checks that it is so).
        Cmd::GenCommit(_) | Cmd::Compare(_) | Cmd::Throughput { .. } | Cmd::Soak { .. } => {
            Some(ControllerOptions {
                heartbeat_interval_ms: Some(HOUR_MS),
                max_offline_ms: Some(HOUR_MS),
                max_warming_up_ms: Some(HOUR_MS),
                ..ControllerOptions::default()
            })
        }
        _ => None,
    };
    // The migrate run times compute notifications: a hook receiving them, started first.
    let hook = match cli.cmd {
        Cmd::Migrate { .. } => Some(ComputeHook::start().await?),
        _ => None,
    };
    let controller = controller.or_else(|| {
        hook.as_ref().map(|h| ControllerOptions {
            compute_hook_url: Some(h.url().to_owned()),
            ..ControllerOptions::default()
        })
    });
    let (cluster, _) = Cluster::start_formed_with_controller(opts, controller).await?;
    eprintln!("cluster directory: {}", cluster.dir().display());
    let result = async {
        match cli.cmd {
            Cmd::Failover { kills, retry_ms } => {
                failover(&cluster, kills, Duration::from_millis(retry_ms)).await
            }
            Cmd::Latency { writes } => latency(&cluster, writes).await,
            Cmd::GenCommit(ref w) | Cmd::Compare(ref w) => {
                let plan = write_path::Plan {
                    clients: w.clients.clone(),
                    seconds: w.seconds,
                    runs: w.runs,
                };
                let with_etcd = matches!(cli.cmd, Cmd::Compare(_));
                write_path::run(&cluster, &plan, with_etcd).await
            }
            Cmd::Soak { seconds, writers } => soak::run(&cluster, seconds, writers).await,
            Cmd::Split { runs, bystanders } => split(&cluster, runs, bystanders).await,
            Cmd::ReconcileFailover { kills } => reconcile_failover(&cluster, kills).await,
            Cmd::TimelineCreate {
                runs,
                ref shard_counts,
                sims,
            } => timeline_create(&cluster, runs, shard_counts, sims).await,
            Cmd::Migrate {
                runs,
                timelines,
                download_ms_per_layer,
                catch_up_ms,
            } => {
                let hook = hook.as_ref().context("the compute hook")?;
                let rates = serde_json::json!({
                    "download_ms_per_layer": download_ms_per_layer,
                    "catch_up_ms": catch_up_ms,
                });
                migrate(&cluster, hook, runs, timelines, &rates).await
            }
            Cmd::Scale {
                shards,
                shards_per_tenant,
                sims,
                concurrency,
                reattaches,
            } => {
                let plan = scale::Plan {
                    shards,
                    per_tenant: shards_per_tenant,
                    sims,
                    concurrency,
                    reattaches,
                    max_offline: Duration::from_secs(10),
                };
                scale::run(&cluster, &plan).await
            }
            Cmd::Throughput {
                clients,
                seconds,
                via_follower,
            } => {
                throughput(
                    &cluster,
                    clients,
                    Duration::from_secs(seconds),
                    via_follower,
                )
                .await
            }
        }
    }
    .await;
    if result.is_err() {
        for id in cluster.ids() {
            eprintln!("log of replica {id}: {}", cluster.log_path(id).display());
        }
        cluster
            .check_no_crashes()
            .unwrap_or_else(|e| eprintln!("{e}"));
    }
    result
}

/// A client with a short timeout, so one request to a dead peer does not distort a measurement.
fn bench_client(cluster: &Cluster, id: u64) -> Client {
    Client::new(http_client(Duration::from_secs(2)), cluster.url(id))
}

async fn failover(cluster: &Cluster, kills: u32, retry: Duration) -> anyhow::Result<()> {
    let mut samples = Vec::new();
    for round in 1..=kills {
        let leader = cluster.wait_for_leader(deadline::ELECTION).await?;
        let via = cluster
            .live_ids()
            .into_iter()
            .find(|id| *id != leader)
            .context("no survivor")?;
        let client = bench_client(cluster, via);
        let node = next_node();

        cluster.kill(leader);
        let killed_at = Instant::now();
        let mut attempts = 0u32;
        // What the survivor answered while there was no leader, e.g. "HTTP 503" -> 80.
        let mut failures: BTreeMap<String, u32> = BTreeMap::new();
        loop {
            attempts += 1;
            match client.register_node(&node).await {
                Ok(()) => break,
                Err(e) if killed_at.elapsed() > deadline::WRITE => {
                    bail!("round {round}: no write for {:?}: {e}", deadline::WRITE)
                }
                Err(e) => {
                    let kind = match e.status() {
                        Some(code) => format!("HTTP {code}"),
                        None => "no response".to_owned(),
                    };
                    *failures.entry(kind).or_default() += 1;
                    tokio::time::sleep(retry).await;
                }
            }
        }
        let sample = killed_at.elapsed();
        let new_leader = cluster
            .wait_for_new_leader(leader, deadline::ELECTION)
            .await?;
        println!(
            "round {round}: killed leader {leader}, write via {via} succeeded after {} ms \
             ({attempts} attempts, failures {failures:?}), new leader {new_leader}",
            ms(sample)
        );
        samples.push(sample);

        cluster.restart(leader)?;
        cluster.wait_converged(deadline::CONVERGE).await?;
    }
    let s = Summary::of(&samples).context("no samples")?;
    println!(
        "failover (kill -9 leader -> first acknowledged write), {} rounds: median {} ms, min {} ms, \
         max {} ms, p90 {} ms",
        s.count,
        ms(s.p50),
        ms(s.min),
        ms(s.max),
        ms(s.p90)
    );
    Ok(())
}

async fn latency(cluster: &Cluster, writes: u32) -> anyhow::Result<()> {
    let leader = cluster.wait_for_leader(deadline::ELECTION).await?;
    let client = bench_client(cluster, leader);
    for _ in 0..20 {
        client
            .register_node(&next_node())
            .await
            .context("warm-up write")?;
    }
    let mut samples = Vec::new();
    let mut errors = 0u32;
    for _ in 0..writes {
        let node = next_node();
        let start = Instant::now();
        match client.register_node(&node).await {
            Ok(()) => samples.push(start.elapsed()),
            Err(e) => {
                errors += 1;
                eprintln!("write failed: {e}");
            }
        }
    }
    let s = Summary::of(&samples).context("no successful writes")?;
    println!("latency of sequential writes to the leader ({errors} errors): {s}");
    Ok(())
}

async fn throughput(
    cluster: &Cluster,
    clients: usize,
    duration: Duration,
    via_follower: bool,
) -> anyhow::Result<()> {
    let leader = cluster.wait_for_leader(deadline::ELECTION).await?;
    let target = if via_follower {
        cluster
            .live_ids()
            .into_iter()
            .find(|id| *id != leader)
            .context("no follower")?
    } else {
        leader
    };
    let http = http_client(Duration::from_secs(10));
    let base = cluster.url(target);
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let client = Client::new(http.clone(), base.clone());
            let errors = errors.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < end {
                    let node = next_node();
                    let sent = Instant::now();
                    match client.register_node(&node).await {
                        Ok(()) => samples.push(sent.elapsed()),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.map_err(|e| anyhow!("writer task failed: {e}"))?);
    }
    let elapsed = start.elapsed();
    let s = Summary::of(&samples).context("no successful writes")?;
    println!(
        "throughput with {clients} writers to the {} for {:.1}s: {:.0} writes/s ({} ok, {} errors); \
         latency median {} ms, p99 {} ms, max {} ms",
        if via_follower { "follower" } else { "leader" },
        elapsed.as_secs_f64(),
        s.count as f64 / elapsed.as_secs_f64(),
        s.count,
        errors.load(Ordering::Relaxed),
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
    Ok(())
}

/// Resident memory of a process, from /proc.
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc status")
}

async fn split(cluster: &Cluster, runs: u32, bystanders: u32) -> anyhow::Result<()> {
    use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};
    const TAG: u32 = 0x5b1b;
    let leader = cluster.wait_for_leader(deadline::ELECTION).await?;
    let (sims, api) = three_sims(cluster, leader).await?;
    for n in 0..bystanders {
        api.create_tenant(&tenant_create_body(&tenant_id(TAG, 1_000 + n), 4, 1))
            .await?;
    }
    let mut answered = Vec::new();
    let mut settled = Vec::new();
    for run in 0..runs {
        let tenant = tenant_id(TAG, run);
        api.create_tenant(&tenant_create_body(&tenant, 4, 1))
            .await?;
        cluster_tests::placement::wait_settled(
            &api,
            &sims,
            std::slice::from_ref(&tenant),
            Duration::from_secs(60),
        )
        .await?;
        let started = Instant::now();
        let r = api.split_tenant(&tenant, 8, None).await?;
        if r.status != 200 {
            bail!("split {tenant}: {} {}", r.status, r.body);
        }
        answered.push(started.elapsed());
        cluster_tests::splits::wait_split_settled(
            &api,
            &sims,
            &tenant,
            &shard_ids(&tenant, 8),
            &[],
            Duration::from_secs(60),
        )
        .await?;
        settled.push(started.elapsed());
    }
    let answer = Summary::of(&answered).context("no samples")?;
    let everywhere = Summary::of(&settled).context("no samples")?;
    println!("split 4 -> 8 with {bystanders} bystander tenants, answer: {answer}");
    println!("split 4 -> 8 with {bystanders} bystander tenants, settled everywhere: {everywhere}");
    Ok(())
}

/// Starts three simulators (two in `az-a`, one in `az-b`) talking to replica `via`.
async fn three_sims(cluster: &Cluster, via: u64) -> anyhow::Result<(Sims, StorageApi)> {
    let sims = Sims::start(&cluster.url(via), &[(1, "az-a"), (2, "az-a"), (3, "az-b")]).await?;
    let api = StorageApi::new(cluster.client(via));
    sims.wait_active(&api, &sims.ids(), Duration::from_secs(60))
        .await?;
    Ok((sims, api))
}

async fn reconcile_failover(cluster: &Cluster, kills: u32) -> anyhow::Result<()> {
    use cluster_tests::storage_api::{tenant_create_body, tenant_id};
    let leader = cluster.wait_for_leader(deadline::ELECTION).await?;
    let (sims, _) = three_sims(cluster, cluster.live_other_than(leader)).await?;
    let mut samples = Vec::new();
    for round in 1..=kills {
        // Bring back the previous victim first, so every kill leaves a quorum.
        for id in cluster.ids() {
            if !cluster.is_running(id) {
                cluster.restart(id)?;
            }
        }
        cluster.wait_converged(deadline::CONVERGE).await?;
        let leader = cluster.wait_for_leader(deadline::ELECTION).await?;
        let via = cluster.live_other_than(leader);
        let api = StorageApi::new(cluster.client(via));
        let killed_at = chrono::Utc::now();
        cluster.kill(leader);
        let body = tenant_create_body(&tenant_id(0xfa11, round), 2, 1);
        api.create_tenant_with_retry(&body, Duration::from_secs(60))
            .await?;
        let term = cluster.status_of(via).await?.term;
        let events = sims.all_history()?;
        let ms = cluster_tests::history::first_call_in_term(&events, term, killed_at)
            .with_context(|| format!("no location_config accepted in term {term}"))?;
        samples.push(Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
    }
    let summary = Summary::of(&samples).context("no samples")?;
    println!("leader SIGKILL -> first location_config of the new leader accepted: {summary}");
    Ok(())
}

/// The flags of `timeline-create`, checked before any process starts.
fn check_timeline_flags(runs: u32, shard_counts: &[u8], sims: u64) -> anyhow::Result<()> {
    if shard_counts.is_empty() || shard_counts.contains(&0) {
        bail!("--shard-counts needs counts of at least 1, got {shard_counts:?}");
    }
    let mut distinct = shard_counts.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != shard_counts.len() {
        bail!("--shard-counts lists a count twice: {shard_counts:?}");
    }
    if sims == 0 || runs == 0 {
        bail!("--sims and --runs must be at least 1");
    }
    Ok(())
}

/// Tenant and timeline ids of `timeline-create` start with this.
const TIMELINE_TAG: u32 = 0x7c4e;

/// `timeline-create`: one settled `Attached(1)` tenant per shard count on `sims` simulators in
/// one AZ (so the attached shards spread over all of them), then `runs` fresh timelines per
/// tenant, created one after another through the leader. A sample is one request, from send to
/// the 201 with its body read; any other answer, or a 201 naming another timeline, fails the run.
/// After each timed create (untimed) the timeline's describe must list it on every shard.
async fn timeline_create(
    cluster: &Cluster,
    runs: u32,
    shard_counts: &[u8],
    sims: u64,
) -> anyhow::Result<()> {
    use cluster_tests::storage_api::{tenant_create_body, tenant_id};
    let leader = cluster.wait_for_leader(deadline::ELECTION).await?;
    let specs: Vec<(u64, &str)> = (1..=sims).map(|id| (id, "az-a")).collect();
    let fleet = Sims::start(&cluster.url(leader), &specs).await?;
    let api = StorageApi::new(cluster.client(leader));
    fleet
        .wait_active(&api, &fleet.ids(), Duration::from_secs(60))
        .await?;

    let tenants: Vec<(u8, String)> = shard_counts
        .iter()
        .map(|&count| (count, tenant_id(TIMELINE_TAG, u32::from(count))))
        .collect();
    for (count, tenant) in &tenants {
        api.create_tenant(&tenant_create_body(tenant, *count, 1))
            .await
            .with_context(|| format!("creating the {count}-shard tenant {tenant}"))?;
    }
    let ids: Vec<String> = tenants.iter().map(|(_, t)| t.clone()).collect();
    let placed =
        cluster_tests::placement::wait_settled(&api, &fleet, &ids, Duration::from_secs(120))
            .await
            .context("waiting until every shard is attached on a simulator")?;
    for (count, tenant) in &tenants {
        let mut per_node: BTreeMap<u64, usize> = BTreeMap::new();
        for (shard, at) in &placed {
            if shard.starts_with(tenant.as_str()) {
                *per_node.entry(at.node).or_default() += 1;
            }
        }
        eprintln!("{count}-shard tenant {tenant}: attached shards per simulator {per_node:?}");
    }

    let result = timeline_runs(cluster, leader, &tenants, runs, sims).await;
    if result.is_err() {
        fleet
            .check_no_crashes()
            .unwrap_or_else(|e| eprintln!("{e}"));
        fleet.print_log_tails();
    }
    result?;
    fleet.check_no_crashes()
}

/// The timed part of [`timeline_create`]: `runs` creates per `(shard count, tenant)`.
async fn timeline_runs(
    cluster: &Cluster,
    leader: u64,
    tenants: &[(u8, String)],
    runs: u32,
    sims: u64,
) -> anyhow::Result<()> {
    use reqwest::Method;
    // Long enough for a 32-shard fan-out on a loaded machine; a timeout fails the run.
    let client = Client::new(http_client(Duration::from_secs(30)), cluster.url(leader));
    let timelines = StorageApi::new(client);
    let mut results = Vec::new();
    for (count, tenant) in tenants {
        let path = format!("/v1/tenant/{tenant}/timeline");
        let mut samples = Vec::new();
        for run in 0..runs {
            let timeline = format!("{TIMELINE_TAG:08x}{:016x}{run:08x}", u64::from(*count));
            let body = serde_json::json!({"new_timeline_id": timeline, "pg_version": 16});
            let sent = Instant::now();
            let answer = timelines
                .send(Method::POST, &path, Some(&body))
                .await
                .with_context(|| format!("POST {path} ({count} shards, run {run})"))?;
            let elapsed = sent.elapsed();
            if answer.status != 201 {
                bail!(
                    "POST {path} ({count} shards, run {run}): {} {}",
                    answer.status,
                    answer.body
                );
            }
            let created: serde_json::Value = serde_json::from_str(&answer.body)
                .with_context(|| format!("POST {path}: 201 with a body that is not JSON"))?;
            if created["timeline_id"] != timeline.as_str() {
                bail!("POST {path}: asked for timeline {timeline}, 201 named {created}");
            }
            samples.push(elapsed);

            // Untimed: every shard holds it.
            let describe = format!("/control/v1/tenant/{tenant}/timeline/{timeline}");
            let described = timelines.send(Method::GET, &describe, None).await?;
            if described.status != 200 {
                bail!("GET {describe}: {} {}", described.status, described.body);
            }
            let described: serde_json::Value = serde_json::from_str(&described.body)?;
            let shards = described["shards"]
                .as_array()
                .map_or(&[][..], Vec::as_slice);
            let holding = shards
                .iter()
                .filter(|s| s["timeline_id"] == timeline.as_str())
                .count();
            if holding != usize::from(*count) || shards.len() != usize::from(*count) {
                bail!("GET {describe}: {holding} of {count} shards hold it: {described}");
            }
        }
        let line: Vec<String> = samples.iter().map(|d| ms(*d)).collect();
        eprintln!("{count} shards, ms in order: {}", line.join(" "));
        let summary = Summary::of(&samples).context("no samples")?;
        results.push((*count, summary));
    }

    println!(
        "timeline create through the leader, {sims} simulators, Attached(1), {runs} runs each:"
    );
    println!("| shards | median ms | min ms | max ms | p90 ms | spread (max - min) ms |");
    println!("|---|---|---|---|---|---|");
    for (count, s) in &results {
        println!(
            "| {count} | {} | {} | {} | {} | {} |",
            ms(s.p50),
            ms(s.min),
            ms(s.max),
            ms(s.p90),
            ms(s.max - s.min)
        );
    }
    Ok(())
}

/// Tenant and timeline ids of `migrate` start with this.
const MIGRATE_TAG: u32 = 0x3162;

/// The phases of one prewarmed migration, in order, each from the previous milestone (the
/// last two from the destination's `AttachedSingle`), named as printed.
const PHASES: [&str; 9] = [
    "request -> destination Secondary",
    "Secondary -> warm-up complete",
    "warm-up complete -> origin AttachedStale",
    "AttachedStale -> destination AttachedMulti",
    "AttachedMulti -> catch-up done (wait_lsn)",
    "catch-up done -> destination AttachedSingle",
    "AttachedSingle -> compute notified",
    "AttachedSingle -> origin Secondary/Detached",
    "total (request -> last of demoted, notified)",
];

/// `migrate`: three simulators in `az-a`, one 1-shard `Attached(1)` tenant with `timelines`
/// timelines, settled; then `runs` prewarmed migrations of its shard, each to the node that
/// holds nothing of it (the origin of one run is the destination of the next but one, so the
/// destinations alternate between two nodes; the secondary stays put), one after another.
/// Each run is timed from the simulators' histories (1 ms timestamps, same clock as the
/// bench) and the compute hook's arrival times:
///
/// request sent -> destination `Secondary` accepted -> its warm-up download complete (a
/// `secondary_download` recording `N of N layers`) -> origin `AttachedStale` -> destination
/// `AttachedMulti` -> its catch-up (`wait_lsn` answered without "still catching up") ->
/// destination `AttachedSingle` -> compute notified naming the destination, and the origin
/// demoted (`Secondary` or `Detached`).
///
/// A run fails unless every milestone is found in that order and the migration ends settled
/// (the controller and every simulator agree, `consistency_check` passes) with exactly one
/// new generation, on the destination; at the end the histories must be generation-safe.
async fn migrate(
    cluster: &Cluster,
    hook: &ComputeHook,
    runs: u32,
    timelines: u32,
    rates: &serde_json::Value,
) -> anyhow::Result<()> {
    use cluster_tests::placement::wait_settled;
    use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};
    let leader = cluster.wait_for_leader(deadline::ELECTION).await?;
    let fleet = Sims::start(
        &cluster.url(leader),
        &[(1, "az-a"), (2, "az-a"), (3, "az-a")],
    )
    .await?;
    let api = StorageApi::new(cluster.client(leader));
    fleet
        .wait_active(&api, &fleet.ids(), Duration::from_secs(60))
        .await?;
    let tenant = tenant_id(MIGRATE_TAG, 1);
    let shard = shard_ids(&tenant, 1)[0].clone();
    api.create_tenant(&tenant_create_body(&tenant, 1, 1))
        .await
        .context("creating the tenant")?;
    let tenants = [tenant.clone()];
    wait_settled(&api, &fleet, &tenants, Duration::from_secs(60)).await?;
    for n in 0..timelines {
        let timeline = format!("{MIGRATE_TAG:08x}{:024x}", n + 1);
        let answer = api
            .send(
                reqwest::Method::POST,
                &format!("/v1/tenant/{tenant}/timeline"),
                Some(&serde_json::json!({"new_timeline_id": timeline, "pg_version": 16})),
            )
            .await?;
        if answer.status != 201 {
            bail!("timeline create: {} {}", answer.status, answer.body);
        }
    }
    wait_settled(&api, &fleet, &tenants, Duration::from_secs(60)).await?;
    fleet.set_behaviour(rates).await?;

    let result = migrate_runs(&api, &fleet, hook, &tenant, &shard, runs).await;
    if result.is_err() {
        fleet
            .check_no_crashes()
            .unwrap_or_else(|e| eprintln!("{e}"));
        fleet.print_log_tails();
    }
    let (samples, answered) = result?;
    cluster_tests::history::ensure_safe(&fleet.all_history()?)?;
    fleet.check_no_crashes()?;

    println!(
        "prewarmed migration of a 1-shard Attached(1) tenant with {timelines} timelines \
         ({} layers), 3 simulators, rates {rates}, {runs} runs:",
        u64::from(timelines) * 10
    );
    println!("| phase | median ms | min ms | max ms |");
    println!("|---|---|---|---|");
    let answer = Summary::of(&answered).context("no samples")?;
    println!(
        "| migrate answered (request -> 200) | {} | {} | {} |",
        ms(answer.p50),
        ms(answer.min),
        ms(answer.max)
    );
    for (i, name) in PHASES.iter().enumerate() {
        let column: Vec<Duration> = samples.iter().map(|s| s[i]).collect();
        let s = Summary::of(&column).context("no samples")?;
        println!("| {name} | {} | {} | {} |", ms(s.p50), ms(s.min), ms(s.max));
    }
    Ok(())
}

/// The timed part of [`migrate`]: per run, the [`PHASES`] durations, and the time until the
/// migrate request was answered.
async fn migrate_runs(
    api: &StorageApi,
    fleet: &Sims,
    hook: &ComputeHook,
    tenant: &str,
    shard: &str,
    runs: u32,
) -> anyhow::Result<(Vec<[Duration; 9]>, Vec<Duration>)> {
    use cluster_tests::moves::{event_time, new_attachments};
    let mut samples = Vec::new();
    let mut answered = Vec::new();
    for run in 1..=runs {
        let described = api.describe_tenant(tenant).await?;
        let origin = described.shards[0]
            .node_attached
            .context("the shard is attached nowhere")?;
        let secondaries = described.shards[0].node_secondary.clone();
        let destination = fleet
            .ids()
            .into_iter()
            .find(|n| *n != origin && !secondaries.contains(n))
            .context("no node holding nothing of the shard")?;
        let body = serde_json::json!({
            "node_id": destination,
            "origin_node_id": origin,
            "migration_config": {"prewarm": true},
        });
        let path = format!("/control/v1/tenant/{shard}/migrate");
        // History timestamps are whole milliseconds: compare from the start of this one.
        let sent_at = chrono::Utc::now();
        let since = sent_at - chrono::Duration::milliseconds(1);
        let sent = Instant::now();
        let answer = api.send(reqwest::Method::PUT, &path, Some(&body)).await?;
        answered.push(sent.elapsed());
        if answer.status != 200 {
            bail!("run {run}: PUT {path}: {} {}", answer.status, answer.body);
        }
        let notified = cluster_tests::wait_until(
            "the migration settled and compute told",
            Duration::from_secs(120),
            async || {
                let described = api.describe_tenant(tenant).await?;
                let view = fleet.view().await?;
                let settled =
                    cluster_tests::placement::check_tenant(&described, &view, &fleet.live_ids())?;
                anyhow::ensure!(
                    settled[shard].node == destination,
                    "attached on {}",
                    settled[shard].node
                );
                let told = hook
                    .for_tenant(tenant)
                    .into_iter()
                    .find(|n| {
                        n.at >= sent_at && n.placements(1) == [(shard.to_owned(), destination)]
                    })
                    .context("compute not told yet")?;
                let events = fleet.all_history()?;
                anyhow::ensure!(
                    events.iter().any(|e| e.accepted
                        && e.kind == "location_config"
                        && e.node_id == origin
                        && e.tenant_shard_id.as_deref() == Some(shard)
                        && matches!(e.mode.as_deref(), Some("Secondary" | "Detached"))
                        && event_time(e).is_some_and(|t| t >= since)),
                    "origin not demoted yet"
                );
                Ok(told.at)
            },
        )
        .await
        .with_context(|| format!("run {run}: {origin} -> {destination}"))?;
        api.consistency_check()
            .await
            .with_context(|| format!("run {run}: consistency check"))?;

        let mut events: Vec<(chrono::DateTime<chrono::Utc>, cluster_tests::history::Event)> = fleet
            .all_history()?
            .into_iter()
            .filter(|e| e.accepted && e.tenant_shard_id.as_deref() == Some(shard))
            .filter_map(|e| Some((event_time(&e)?, e)))
            .filter(|(t, _)| *t >= since)
            .collect();
        events.sort_by_key(|(t, _)| *t);
        let moved: Vec<_> =
            new_attachments(&events.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>())
                .into_iter()
                .filter(|m| m.from.is_some() || m.node != origin)
                .collect();
        if moved.len() != 1 || moved[0].node != destination {
            bail!("run {run}: expected one new attachment on {destination}, saw {moved:?}");
        }
        let find =
            |from: usize, what: &str, pred: &dyn Fn(&cluster_tests::history::Event) -> bool| {
                events
                    .iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, (_, e))| pred(e))
                    .map(|(i, (t, _))| (i, *t))
                    .with_context(|| format!("run {run}: no {what} in {events:#?}"))
            };
        let location = |node: u64, modes: &'static [&'static str]| {
            move |e: &cluster_tests::history::Event| {
                e.kind == "location_config"
                    && e.node_id == node
                    && e.mode.as_deref().is_some_and(|m| modes.contains(&m))
            }
        };
        let (i, secondary) = find(
            0,
            "destination Secondary",
            &location(destination, &["Secondary"]),
        )?;
        let (i, warmed) = find(i, "complete warm-up download", &|e| {
            e.kind == "secondary_download"
                && e.node_id == destination
                && e.reason.as_deref().is_some_and(download_complete)
        })?;
        let (i, stale) = find(
            i,
            "origin AttachedStale",
            &location(origin, &["AttachedStale"]),
        )?;
        let (i, multi) = find(
            i,
            "destination AttachedMulti",
            &location(destination, &["AttachedMulti"]),
        )?;
        let (i, caught_up) = find(i, "catch-up", &|e| {
            e.kind == "wait_lsn"
                && e.node_id == destination
                && e.reason
                    .as_deref()
                    .is_some_and(|r| !r.contains("still catching up"))
        })?;
        let (i, single) = find(
            i,
            "destination AttachedSingle",
            &location(destination, &["AttachedSingle"]),
        )?;
        let (_, demoted) = find(
            i,
            "origin demoted",
            &location(origin, &["Secondary", "Detached"]),
        )?;
        let d = |from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>| {
            (to - from).to_std().unwrap_or_default()
        };
        let phases = [
            d(sent_at, secondary),
            d(secondary, warmed),
            d(warmed, stale),
            d(stale, multi),
            d(multi, caught_up),
            d(caught_up, single),
            d(single, notified),
            d(single, demoted),
            d(sent_at, demoted.max(notified)),
        ];
        let line: Vec<String> = phases.iter().map(|p| ms(*p)).collect();
        eprintln!(
            "run {run}: {origin} -> {destination}, answered in {} ms; phases ms: {}",
            ms(answered[answered.len() - 1]),
            line.join(" ")
        );
        samples.push(phases);
    }
    Ok((samples, answered))
}

/// Whether a `secondary_download` reason (`"<downloaded> of <total> layers"`) says every
/// layer of a non-empty heatmap is held.
fn download_complete(reason: &str) -> bool {
    let Some(counts) = reason.strip_suffix(" layers") else {
        return false;
    };
    match counts.split_once(" of ") {
        Some((done, total)) => done == total && total.parse::<u64>().is_ok_and(|t| t > 0),
        None => false,
    }
}
