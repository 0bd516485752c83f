//! Election soak: a healthy cluster, idle or under generation-commit load, must not change its
//! leader. Run with the binary's default Raft timings (the ones failover is tuned to).
//!
//! Every replica's Raft term is read at the start and every `POLL` until the end. Any election,
//! even one that fails, raises some replica's term, so a term that moved, or a leader that
//! changed, is counted; the run fails if the count is not zero. Writers use the generation
//! commit workload of `write_path.rs`; their rate is reported per minute so a slowdown that
//! precedes an election can be seen.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cluster_tests::Cluster;

use crate::write_path::GenerationFleet;

const POLL: Duration = Duration::from_millis(200);
/// Writers run in windows of this length between status polls of the whole cluster.
const WINDOW: Duration = Duration::from_secs(60);

/// Each replica's (term, leader) as it reports them.
async fn terms(cluster: &Cluster) -> anyhow::Result<Vec<(u64, u64, Option<u64>)>> {
    let mut out = Vec::new();
    for id in cluster.ids() {
        let s = cluster
            .status_of(id)
            .await
            .with_context(|| format!("status of replica {id}"))?;
        out.push((id, s.term, s.leader_id));
    }
    Ok(out)
}

pub async fn run(cluster: &Cluster, seconds: u64, writers: usize) -> anyhow::Result<()> {
    cluster.wait_converged(Duration::from_secs(30)).await?;
    let fleet = if writers > 0 {
        Some(GenerationFleet::start(cluster, writers).await?)
    } else {
        None
    };
    let start_view = terms(cluster).await?;
    let (_, term0, leader0) = start_view[0];
    if start_view
        .iter()
        .any(|(_, t, l)| *t != term0 || *l != leader0)
    {
        bail!("replicas disagree at the start: {start_view:?}");
    }
    let leader0 = leader0.context("no leader at the start")?;
    println!(
        "soak: {seconds} s, {writers} writers, leader {leader0} in term {term0}; \
         polling every replica's term every {POLL:?}"
    );
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let poller = {
        let mut changes = Vec::new();
        async move {
            let mut polls = 0u64;
            while Instant::now() < end {
                polls += 1;
                for (id, term, leader) in terms(cluster).await? {
                    if term != term0 || leader != Some(leader0) {
                        changes.push(format!(
                            "{:.1} s: replica {id} in term {term}, leader {leader:?}",
                            started.elapsed().as_secs_f64()
                        ));
                    }
                }
                tokio::time::sleep(POLL).await;
            }
            anyhow::Ok((polls, changes))
        }
    };
    let load = async {
        let Some(fleet) = &fleet else {
            return anyhow::Ok(Vec::new());
        };
        let mut rates = Vec::new();
        while Instant::now() < end {
            let left = end.saturating_duration_since(Instant::now()).min(WINDOW);
            if left < Duration::from_secs(1) {
                break;
            }
            let w = fleet.run(writers, left).await?;
            println!(
                "soak: {:.0} s: {writers} writers: {w}",
                started.elapsed().as_secs_f64()
            );
            rates.push(w.rate);
        }
        if fleet.connections_to_nodes() > 0 {
            bail!("the controller called the fake nodes");
        }
        Ok(rates)
    };
    let (polled, rates) = tokio::join!(poller, load);
    let (polls, changes) = polled?;
    rates?;
    let end_view = terms(cluster).await?;
    let moved: Vec<_> = end_view
        .iter()
        .filter(|(_, t, l)| *t != term0 || *l != Some(leader0))
        .collect();
    println!(
        "soak: {polls} polls of {} replicas; at the end {end_view:?}",
        end_view.len()
    );
    if !changes.is_empty() || !moved.is_empty() {
        for c in changes.iter().take(20) {
            println!("  {c}");
        }
        bail!(
            "leader or term changed during the soak: {} observations, end {moved:?}",
            changes.len()
        );
    }
    println!("soak: 0 leader changes, 0 term changes over {seconds} s with {writers} writers");
    Ok(())
}
