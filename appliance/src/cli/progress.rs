//! `--wait`: polls the node or tenant until the operation ends, printing a progress line each
//! time the count changes (to stdout, or to stderr with `--json` so stdout stays one document).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::client::{Api, CliError};
use super::output::Out;

/// How often `--wait` asks.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
pub enum NodeOp {
    Drain,
    Fill,
}

impl NodeOp {
    pub fn path(self) -> &'static str {
        match self {
            NodeOp::Drain => "drain",
            NodeOp::Fill => "fill",
        }
    }

    pub fn name(self) -> &'static str {
        self.path()
    }

    /// The node's scheduling policy while the operation runs.
    pub fn policy(self) -> &'static str {
        match self {
            NodeOp::Drain => "Draining",
            NodeOp::Fill => "Filling",
        }
    }

    /// Its policy once the operation ran to its end.
    fn done_policy(self) -> &'static str {
        match self {
            NodeOp::Drain => "PauseForRestart",
            NodeOp::Fill => "Active",
        }
    }
}

fn progress_line(out: Out, line: &str) {
    if out.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

async fn scheduling_of(api: &Api, node: u64) -> Result<String, CliError> {
    let n = api.get(&format!("/control/v1/node/{node}")).await?;
    n["scheduling"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| CliError::Failed(format!("node {node}: no scheduling policy in {n}")))
}

/// Shards attached on `node` by intent.
async fn attached_on(api: &Api, node: u64) -> Result<usize, CliError> {
    let r = api.get(&format!("/control/v1/node/{node}/shards")).await?;
    Ok(r["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["is_intended_secondary"] == json!(false))
        .count())
}

/// Until the drain or fill of `node` ends; its summary, or an error when it ended otherwise
/// (cancelled, the node deleted) or did not end in time.
pub async fn wait_node_op(
    api: &Api,
    out: Out,
    op: NodeOp,
    node: u64,
    timeout: Duration,
) -> Result<Value, CliError> {
    let deadline = Instant::now() + timeout;
    let mut last: Option<usize> = None;
    loop {
        let scheduling = scheduling_of(api, node).await?;
        let attached = attached_on(api, node).await?;
        if last != Some(attached) {
            let what = match op {
                NodeOp::Drain => "left to move",
                NodeOp::Fill => "attached",
            };
            progress_line(
                out,
                &format!(
                    "{} of node {node}: {attached} shard(s) {what}, node {scheduling}",
                    op.name()
                ),
            );
            last = Some(attached);
        }
        if scheduling == op.done_policy() {
            progress_line(
                out,
                &format!(
                    "{} of node {node} done: node {scheduling}, {attached} shard(s) attached",
                    op.name()
                ),
            );
            return Ok(json!({
                "node_id": node,
                "operation": op.name(),
                "done": true,
                "scheduling": scheduling,
                "attached": attached,
            }));
        }
        if scheduling != op.policy() {
            return Err(CliError::Failed(format!(
                "{} of node {node} ended without finishing: the node is {scheduling}",
                op.name()
            )));
        }
        if Instant::now() >= deadline {
            return Err(CliError::TimedOut(format!(
                "{} of node {node} still running after {}s ({attached} shard(s) attached)",
                op.name(),
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// After a cancel: until `node`'s policy is no longer `policy` (upstream's CLI waits too).
pub async fn wait_policy_left(
    api: &Api,
    node: u64,
    policy: &str,
    timeout_secs: u64,
) -> Result<(), CliError> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let scheduling = match api.get(&format!("/control/v1/node/{node}")).await {
            Ok(n) => n["scheduling"].as_str().unwrap_or_default().to_string(),
            // A cancelled delete can still have removed the node.
            Err(CliError::Server { status, .. }) if status == 404 => return Ok(()),
            Err(e) => return Err(e),
        };
        if scheduling != policy {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CliError::TimedOut(format!(
                "node {node} is still {policy} after {timeout_secs}s"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// After a split: until the tenant has `count` shards, none splitting or reconciling, each
/// attached.
pub async fn wait_split(
    api: &Api,
    out: Out,
    tenant: &str,
    count: usize,
    timeout: Duration,
) -> Result<Value, CliError> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        let t = api.get(&format!("/control/v1/tenant/{tenant}")).await?;
        let shards = t["shards"].as_array().cloned().unwrap_or_default();
        let settled = shards
            .iter()
            .filter(|s| {
                s["is_splitting"] == json!(false)
                    && s["is_reconciling"] == json!(false)
                    && !s["node_attached"].is_null()
            })
            .count();
        let now = (shards.len(), settled);
        if last != Some(now) {
            progress_line(
                out,
                &format!(
                    "split of {tenant}: {} shard(s), {settled} of {count} settled",
                    shards.len()
                ),
            );
            last = Some(now);
        }
        if shards.len() == count && settled == count {
            progress_line(out, &format!("split of {tenant} done: {count} shard(s)"));
            return Ok(t);
        }
        if Instant::now() >= deadline {
            return Err(CliError::TimedOut(format!(
                "split of {tenant}: {settled} of {count} shard(s) settled after {}s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
