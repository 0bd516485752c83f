//! The pageserver registry: `nodes`, `node-register`, `node-configure`, the three deletes,
//! tombstones and `node-drop`.

use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::client::{Api, CliError};
use super::output::{Out, cell, table};
use super::progress;

#[derive(Subcommand, Debug)]
pub enum NodesCmd {
    /// List the pageservers (GET /control/v1/node).
    Nodes,
    /// Register a pageserver (POST /control/v1/node).
    NodeRegister {
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        listen_pg_addr: String,
        #[arg(long)]
        listen_pg_port: u16,
        #[arg(long)]
        listen_http_addr: String,
        #[arg(long)]
        listen_http_port: u16,
        #[arg(long)]
        listen_https_port: Option<u16>,
        #[arg(long)]
        availability_zone_id: String,
    },
    /// Set a node's availability or scheduling policy (PUT /control/v1/node/:id/config).
    NodeConfigure {
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        availability: Option<Availability>,
        #[arg(long)]
        scheduling: Option<Scheduling>,
    },
    /// Delete a node at once, without moving its shards (DELETE /control/v1/node/:id;
    /// deprecated: prefer node-start-delete).
    NodeDelete {
        #[arg(long)]
        node_id: u64,
    },
    /// Start a node delete: its shards move off, then it is removed and tombstoned
    /// (PUT /control/v1/node/:id/delete).
    NodeStartDelete {
        #[arg(long)]
        node_id: u64,
        /// Delete even when shards could not be moved off.
        #[arg(long)]
        force: bool,
    },
    /// Cancel a running node delete and wait until the node is no longer Deleting.
    NodeCancelDelete {
        #[arg(long)]
        node_id: u64,
        /// Seconds to wait for the cancel to take effect.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// List the tombstones of deleted nodes (GET /debug/v1/tombstone).
    #[command(visible_alias = "tombstones")]
    NodeTombstones,
    /// Remove a tombstone so the id may register again (DELETE /debug/v1/tombstone/:id).
    NodeDeleteTombstone {
        #[arg(long)]
        node_id: u64,
    },
    /// Remove a node from the controller's state, moving nothing (POST /debug/v1/node/:id/drop).
    NodeDrop {
        #[arg(long)]
        node_id: u64,
        /// Required: this is no delete; shards are left where they are.
        #[arg(long, required = true)]
        unclean: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Availability {
    Active,
    WarmingUp,
    Offline,
}

impl Availability {
    fn wire(self) -> Value {
        match self {
            Availability::Active => json!("Active"),
            Availability::WarmingUp => json!("WarmingUp"),
            Availability::Offline => json!("Offline"),
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Scheduling {
    Active,
    Filling,
    Pause,
    PauseForRestart,
    Draining,
}

impl Scheduling {
    fn wire(self) -> &'static str {
        match self {
            Scheduling::Active => "Active",
            Scheduling::Filling => "Filling",
            Scheduling::Pause => "Pause",
            Scheduling::PauseForRestart => "PauseForRestart",
            Scheduling::Draining => "Draining",
        }
    }
}

pub async fn run(cmd: NodesCmd, api: &Api, out: Out) -> Result<(), CliError> {
    match cmd {
        NodesCmd::Nodes => {
            let nodes = api.get("/control/v1/node").await?;
            out.print(&nodes, || nodes_table(&nodes));
        }
        NodesCmd::NodeRegister {
            node_id,
            listen_pg_addr,
            listen_pg_port,
            listen_http_addr,
            listen_http_port,
            listen_https_port,
            availability_zone_id,
        } => {
            let body = json!({
                "node_id": node_id,
                "listen_pg_addr": listen_pg_addr,
                "listen_pg_port": listen_pg_port,
                "listen_http_addr": listen_http_addr,
                "listen_http_port": listen_http_port,
                "listen_https_port": listen_https_port,
                "availability_zone_id": availability_zone_id,
            });
            let answer = api.post("/control/v1/node", Some(&body)).await?;
            out.print(&answer, || format!("node {node_id} registered"));
        }
        NodesCmd::NodeConfigure {
            node_id,
            availability,
            scheduling,
        } => {
            if availability.is_none() && scheduling.is_none() {
                return Err(CliError::Usage(
                    "node-configure: give --availability or --scheduling".into(),
                ));
            }
            let body = json!({
                "node_id": node_id,
                "availability": availability.map(Availability::wire),
                "scheduling": scheduling.map(Scheduling::wire),
            });
            let answer = api
                .put(&format!("/control/v1/node/{node_id}/config"), Some(&body))
                .await?;
            out.print(&answer, || format!("node {node_id} configured"));
        }
        NodesCmd::NodeDelete { node_id } => {
            let answer = api.delete(&format!("/control/v1/node/{node_id}")).await?;
            out.print(&answer, || format!("node {node_id} deleted"));
        }
        NodesCmd::NodeStartDelete { node_id, force } => {
            let q = if force { "?force=true" } else { "" };
            let answer = api
                .put(&format!("/control/v1/node/{node_id}/delete{q}"), None)
                .await?;
            out.print(&answer, || format!("delete of node {node_id} started"));
        }
        NodesCmd::NodeCancelDelete { node_id, timeout } => {
            let answer = api
                .delete(&format!("/control/v1/node/{node_id}/delete"))
                .await?;
            progress::wait_policy_left(api, node_id, "Deleting", timeout).await?;
            out.print(&answer, || format!("delete of node {node_id} cancelled"));
        }
        NodesCmd::NodeTombstones => {
            let nodes = api.get("/debug/v1/tombstone").await?;
            out.print(&nodes, || nodes_table(&nodes));
        }
        NodesCmd::NodeDeleteTombstone { node_id } => {
            let answer = api
                .delete(&format!("/debug/v1/tombstone/{node_id}"))
                .await?;
            out.print(&answer, || format!("tombstone of node {node_id} removed"));
        }
        NodesCmd::NodeDrop { node_id, unclean } => {
            debug_assert!(unclean, "clap requires --unclean");
            let answer = api
                .post(&format!("/debug/v1/node/{node_id}/drop"), None)
                .await?;
            out.print(&answer, || format!("node {node_id} dropped"));
        }
    }
    Ok(())
}

/// `[NodeDescribeResponse]` with upstream's columns.
pub fn nodes_table(nodes: &Value) -> String {
    let rows = nodes.as_array().into_iter().flatten().map(|n| {
        vec![
            cell(n.get("id")),
            format!(
                "{}:{}",
                cell(n.get("listen_http_addr")),
                cell(n.get("listen_http_port"))
            ),
            cell(n.get("availability_zone_id")),
            cell(n.get("scheduling")),
            cell(n.get("availability")),
        ]
    });
    table(
        &["Id", "Hostname", "AZ", "Scheduling", "Availability"],
        rows,
    )
}
