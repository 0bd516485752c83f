//! Drain and fill: `start-drain`, `cancel-drain`, `start-fill`, `cancel-fill`, with `--dry-run`
//! (the leader's plan, nothing started) and `--wait` (progress until the operation ends).

use std::time::Duration;

use clap::Subcommand;

use super::client::{Api, CliError};
use super::output::{Out, moves};
use super::progress::{self, NodeOp};

#[derive(Subcommand, Debug)]
pub enum NodeOpsCmd {
    /// Move every attachment off a node before a restart (PUT /control/v1/node/:id/drain).
    StartDrain {
        #[arg(long)]
        node_id: u64,
        /// Print the moves the drain would make now, and start nothing.
        #[arg(long, conflicts_with = "wait")]
        dry_run: bool,
        /// Show progress until the drain ends (exit 0 when the node is PauseForRestart).
        #[arg(long)]
        wait: bool,
        /// Seconds `--wait` waits.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Cancel a running drain and wait until the node is no longer Draining.
    CancelDrain {
        #[arg(long)]
        node_id: u64,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Bring a restarted node's share of attachments back (PUT /control/v1/node/:id/fill).
    StartFill {
        #[arg(long)]
        node_id: u64,
        /// Print the moves the fill would make now, and start nothing.
        #[arg(long, conflicts_with = "wait")]
        dry_run: bool,
        /// Show progress until the fill ends (exit 0 when the node is Active again).
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Cancel a running fill and wait until the node is no longer Filling.
    CancelFill {
        #[arg(long)]
        node_id: u64,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

pub async fn run(cmd: NodeOpsCmd, api: &Api, out: Out) -> Result<(), CliError> {
    match cmd {
        NodeOpsCmd::StartDrain {
            node_id,
            dry_run,
            wait,
            timeout,
        } => start(api, out, NodeOp::Drain, node_id, dry_run, wait, timeout).await,
        NodeOpsCmd::StartFill {
            node_id,
            dry_run,
            wait,
            timeout,
        } => start(api, out, NodeOp::Fill, node_id, dry_run, wait, timeout).await,
        NodeOpsCmd::CancelDrain { node_id, timeout } => {
            cancel(api, out, NodeOp::Drain, node_id, timeout).await
        }
        NodeOpsCmd::CancelFill { node_id, timeout } => {
            cancel(api, out, NodeOp::Fill, node_id, timeout).await
        }
    }
}

async fn start(
    api: &Api,
    out: Out,
    op: NodeOp,
    node: u64,
    dry_run: bool,
    wait: bool,
    timeout: u64,
) -> Result<(), CliError> {
    let path = format!("/control/v1/node/{node}/{}", op.path());
    if dry_run {
        let plan = api.put(&format!("{path}?dry_run=true"), None).await?;
        out.print(&plan, || moves(&plan));
        return Ok(());
    }
    let answer = api.put(&path, None).await?;
    if !wait {
        out.print(&answer, || format!("{} of node {node} started", op.name()));
        return Ok(());
    }
    let summary = progress::wait_node_op(api, out, op, node, Duration::from_secs(timeout)).await?;
    out.print(&summary, String::new);
    Ok(())
}

async fn cancel(api: &Api, out: Out, op: NodeOp, node: u64, timeout: u64) -> Result<(), CliError> {
    let answer = api
        .delete(&format!("/control/v1/node/{node}/{}", op.path()))
        .await?;
    progress::wait_policy_left(api, node, op.policy(), timeout).await?;
    out.print(&answer, || {
        format!("{} of node {node} cancelled", op.name())
    });
    Ok(())
}
