//! The write path, measured without side effects: generation commits, and etcd puts beside them.
//!
//! - Generation commit: `POST /upcall/v1/re-attach` of a registered node holding one shard, the
//!   call a restarting pageserver makes. Each one is one Raft entry (`ReAttach`) that issues the
//!   shard a new generation, answered once a majority has it durably. The nodes are fake: each
//!   is a local listener that counts connections. Heartbeats are off for the run (one round at
//!   startup, before the nodes exist, then one per hour), so nothing calls them: the run fails
//!   if any listener saw a connection, or if a shard's generation did not grow with each
//!   answer. The shards are created beforehand with `POST /debug/v1/attach-hook`.
//! - etcd: `POST /v3/kv/put` of a 64-byte value to the leader's JSON gateway, one key per client.
//!
//! Each client sends one request at a time on its own keep-alive connection to the leader.
//! `compare` alternates the two systems for every client count and run, so both see the same
//! machine; it reports the median rate of the runs with their range, and the median of the runs'
//! p50 and p99 latencies.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use cluster_tests::client::http_client;
use cluster_tests::etcd::{self, Etcd};
use cluster_tests::stats::{Summary, ms};
use cluster_tests::{Cluster, NodeRegisterRequest, deadline};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Node ids of the fake nodes start here (other benchmarks use small ids).
const FIRST_NODE: u64 = 100_000;
const TENANT_TAG: u128 = 0x6e6e_0000_0000_0000_0000_0000_0000_0000;

/// One client's outcome over a measured window.
#[derive(Default)]
struct ClientRun {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

/// What one system did in one window.
pub struct Window {
    pub ok: usize,
    pub errors: u64,
    pub rate: f64,
    pub latency: Summary,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}/s ({} ok, {} errors), p50 {} ms, p99 {} ms, max {} ms",
            self.rate,
            self.ok,
            self.errors,
            ms(self.latency.p50),
            ms(self.latency.p99),
            ms(self.latency.max)
        )
    }
}

/// Runs `clients` tasks for `duration`, each calling `op(client_index)` in a loop.
async fn window<F, Fut>(clients: usize, duration: Duration, op: F) -> anyhow::Result<Window>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let start = Instant::now();
    let end = start + duration;
    let tasks: Vec<JoinHandle<ClientRun>> = (0..clients)
        .map(|i| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut run = ClientRun::default();
                while Instant::now() < end {
                    let sent = Instant::now();
                    match op(i).await {
                        Ok(()) => run.latencies.push(sent.elapsed()),
                        Err(e) => {
                            run.errors += 1;
                            run.first_error.get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                }
                run
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let run = t.await.context("client task")?;
        latencies.extend(run.latencies);
        errors += run.errors;
        first_error = first_error.or(run.first_error);
    }
    let elapsed = start.elapsed();
    if let Some(e) = first_error {
        eprintln!("  {errors} errors; the first: {e}");
    }
    let latency = Summary::of(&latencies).context("no request succeeded")?;
    Ok(Window {
        ok: latencies.len(),
        errors,
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        latency,
    })
}

/// A registered node that is only a listener: it accepts and counts connections, and answers
/// nothing. The controller must never call it during the benchmark.
struct FakeNode {
    id: u64,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeNode {
    async fn start(id: u64) -> anyhow::Result<(FakeNode, u16)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                drop(stream);
            }
        });
        Ok((FakeNode { id, accepted, task }, port))
    }
}

/// `clients` fake nodes, each registered and holding one unsharded shard attached, on the
/// cluster's leader; the generation-commit workload re-attaches them.
pub struct GenerationFleet {
    nodes: Vec<FakeNode>,
    /// Each node's shard's last generation seen, to check that every answer issued a new one.
    last_generation: Vec<Arc<AtomicU64>>,
    http: reqwest::Client,
    leader_url: String,
}

impl GenerationFleet {
    pub async fn start(cluster: &Cluster, clients: usize) -> anyhow::Result<GenerationFleet> {
        let leader = cluster.wait_for_leader(deadline::ELECTION).await?;
        let leader_url = cluster.url(leader);
        let http = http_client(Duration::from_secs(10));
        let mut nodes = Vec::with_capacity(clients);
        let mut last_generation = Vec::with_capacity(clients);
        for i in 0..clients {
            let id = FIRST_NODE + i as u64;
            let (node, port) = FakeNode::start(id).await?;
            let register = NodeRegisterRequest {
                listen_http_port: port,
                listen_pg_port: port,
                ..NodeRegisterRequest::fake(id)
            };
            cluster.client(leader).register_node(&register).await?;
            let resp = http
                .post(format!("{leader_url}/debug/v1/attach-hook"))
                .json(&json!({
                    "tenant_shard_id": format!("{:032x}", TENANT_TAG + i as u128),
                    "node_id": id,
                }))
                .send()
                .await?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await?;
            ensure!(
                status.is_success(),
                "attach-hook for node {id}: {status} {body}"
            );
            let generation = body["gen"]
                .as_u64()
                .context("attach-hook answered no gen")?;
            nodes.push(node);
            last_generation.push(Arc::new(AtomicU64::new(generation)));
        }
        Ok(GenerationFleet {
            nodes,
            last_generation,
            http,
            leader_url,
        })
    }

    /// One measured window with the first `clients` nodes.
    pub async fn run(&self, clients: usize, duration: Duration) -> anyhow::Result<Window> {
        ensure!(clients <= self.nodes.len(), "more clients than fake nodes");
        let ids: Arc<Vec<u64>> = Arc::new(self.nodes.iter().map(|n| n.id).collect());
        let last = Arc::new(self.last_generation.clone());
        let http = self.http.clone();
        let url = format!("{}/upcall/v1/re-attach", self.leader_url);
        window(clients, duration, move |i| {
            let (ids, last, http, url) = (ids.clone(), last.clone(), http.clone(), url.clone());
            async move {
                let resp = http
                    .post(&url)
                    .json(&json!({"node_id": ids[i]}))
                    .send()
                    .await?;
                let status = resp.status();
                let body: serde_json::Value = resp.json().await?;
                ensure!(status.is_success(), "re-attach: {status} {body}");
                let tenants = body["tenants"].as_array().context("no tenants")?;
                ensure!(
                    tenants.len() == 1,
                    "re-attach answered {} shards",
                    tenants.len()
                );
                let generation = tenants[0]["gen"].as_u64().context("no gen")?;
                let before = last[i].swap(generation, Ordering::Relaxed);
                if generation <= before {
                    // Not a transient error: the benchmark would be measuring a broken system.
                    panic!("node {}: generation {generation} after {before}", ids[i]);
                }
                Ok(())
            }
        })
        .await
    }

    /// Connections the controller opened to the fake nodes (must be 0).
    pub fn connections_to_nodes(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.accepted.load(Ordering::Relaxed))
            .sum()
    }
}

/// One measured window of etcd puts to the current leader, one key per client.
async fn etcd_window(
    etcd: &Etcd,
    http: &reqwest::Client,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Window> {
    let url = format!("{}/v3/kv/put", etcd.leader_url(http).await?);
    let http = http.clone();
    let value = [b'v'; 64];
    window(clients, duration, move |i| {
        let (http, url) = (http.clone(), url.clone());
        let body = etcd::put_body(format!("storcon-bench/{i}").as_bytes(), &value);
        async move {
            let resp = http.post(&url).body(body).send().await?;
            let status = resp.status();
            let text = resp.text().await?;
            ensure!(
                status.is_success() && text.contains("\"header\""),
                "put: {status} {text}"
            );
            Ok(())
        }
    })
    .await
}

/// Median and range of a set of rates.
fn rate_summary(rates: &[f64]) -> (f64, f64, f64) {
    let mut sorted = rates.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    (median, sorted[0], sorted[sorted.len() - 1])
}

fn median_duration(samples: impl Iterator<Item = Duration>) -> Duration {
    let mut v: Vec<Duration> = samples.collect();
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

/// The windows of one system at one client count.
#[derive(Default)]
struct Series(Vec<Window>);

impl Series {
    fn line(&self) -> String {
        let rates: Vec<f64> = self.0.iter().map(|w| w.rate).collect();
        let (median, min, max) = rate_summary(&rates);
        format!(
            "{median:>8.0}/s ({min:.0}-{max:.0}), p50 {:>6} ms, p99 {:>6} ms",
            ms(median_duration(self.0.iter().map(|w| w.latency.p50))),
            ms(median_duration(self.0.iter().map(|w| w.latency.p99))),
        )
    }

    fn median_rate(&self) -> f64 {
        rate_summary(&self.0.iter().map(|w| w.rate).collect::<Vec<_>>()).0
    }

    fn median_p50(&self) -> Duration {
        median_duration(self.0.iter().map(|w| w.latency.p50))
    }
}

pub struct Plan {
    pub clients: Vec<usize>,
    pub seconds: u64,
    pub runs: u32,
}

/// `gen-commit`, and `compare` when `with_etcd`: every client count, `runs` windows each.
pub async fn run(cluster: &Cluster, plan: &Plan, with_etcd: bool) -> anyhow::Result<()> {
    ensure!(
        !plan.clients.is_empty() && plan.runs > 0 && plan.seconds > 0,
        "--clients, --runs and --seconds must be positive"
    );
    let etcd = if with_etcd {
        let bin = etcd::binary()
            .context("compare needs etcd: install Debian's etcd-server package, or set ETCD_BIN")?;
        let etcd = Etcd::start(&bin).await?;
        eprintln!("etcd: three members started from {}", bin.display());
        Some(etcd)
    } else {
        None
    };
    let max_clients = plan.clients.iter().copied().max().unwrap_or(1);
    let fleet = GenerationFleet::start(cluster, max_clients).await?;
    eprintln!("storcon: {max_clients} fake nodes registered, one shard attached to each");
    let duration = Duration::from_secs(plan.seconds);
    let etcd_http = http_client(Duration::from_secs(10));
    let mut rows = Vec::new();
    for &clients in &plan.clients {
        let (mut storcon, mut peer) = (Series::default(), Series::default());
        for run in 1..=plan.runs {
            if let Some(etcd) = &etcd {
                let w = etcd_window(etcd, &etcd_http, clients, duration).await?;
                println!("clients {clients:>3} run {run}: etcd puts         {w}");
                peer.0.push(w);
            }
            let w = fleet.run(clients, duration).await?;
            println!("clients {clients:>3} run {run}: storcon gen commits {w}");
            storcon.0.push(w);
        }
        rows.push((clients, storcon, peer));
    }
    let connections = fleet.connections_to_nodes();
    if connections > 0 {
        bail!("the controller opened {connections} connections to the fake nodes during the run");
    }
    println!(
        "\n{} s windows, {} runs each; rate median (min-max), latencies are medians of the runs",
        plan.seconds, plan.runs
    );
    for (clients, storcon, peer) in &rows {
        println!("clients {clients:>3}: storcon {}", storcon.line());
        if !peer.0.is_empty() {
            println!("             etcd    {}", peer.line());
            println!(
                "             storcon/etcd: rate {:.2}x, p50 {} ms vs {} ms",
                storcon.median_rate() / peer.median_rate(),
                ms(storcon.median_p50()),
                ms(peer.median_p50()),
            );
        }
    }
    println!("controller connections to the fake nodes during the run: {connections}");
    Ok(())
}
