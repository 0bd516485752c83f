//! storcon's own: `cluster status` (members, leader, term, applied index, lag per member, the
//! lag asked of the leader), `members add|remove`, `step-down`.

use clap::Subcommand;
use serde_json::{Value, json};

use super::client::{Api, CliError};
use super::output::{Out, cell, table};

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// The Raft cluster.
    Cluster {
        #[command(subcommand)]
        command: ClusterSub,
    },
    /// Add or remove a replica.
    Members {
        #[command(subcommand)]
        command: MembersSub,
    },
    /// Hand leadership to a caught-up voter for a planned restart (PUT /control/v1/step_down).
    StepDown {
        /// The voter to hand it to; any caught-up voter when absent.
        #[arg(long)]
        to: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterSub {
    /// Members, leader, term, applied index and each member's lag (GET /control/v1/cluster,
    /// asked of the leader for lag). `--json` prints the leader's answer (the asked replica's
    /// when the leader cannot be reached).
    Status,
}

#[derive(Subcommand, Debug)]
pub enum MembersSub {
    /// Add a replica as a learner; it becomes a voter once caught up (POST /control/v1/members).
    Add {
        #[arg(long)]
        id: u64,
        /// Its Raft and API address, host:port.
        #[arg(long)]
        addr: String,
    },
    /// Remove a voter or learner (DELETE /control/v1/members/:id).
    Remove {
        #[arg(long)]
        id: u64,
    },
}

pub async fn run(cmd: ClusterCmd, api: &Api, out: Out) -> Result<(), CliError> {
    match cmd {
        ClusterCmd::Cluster {
            command: ClusterSub::Status,
        } => {
            let (status, note) = status_from_leader(api).await?;
            out.print(&status, || {
                let mut text = cluster_text(&status);
                if let Some(note) = note {
                    text.push_str(&format!("\n{note}"));
                }
                text
            });
        }
        ClusterCmd::Members {
            command: MembersSub::Add { id, addr },
        } => {
            let body = json!({"id": id, "addr": addr});
            let status = api.post("/control/v1/members", Some(&body)).await?;
            out.print(&status, || {
                format!("replica {id} added\n{}", cluster_text(&status))
            });
        }
        ClusterCmd::Members {
            command: MembersSub::Remove { id },
        } => {
            let status = api.delete(&format!("/control/v1/members/{id}")).await?;
            out.print(&status, || {
                format!("replica {id} removed\n{}", cluster_text(&status))
            });
        }
        ClusterCmd::StepDown { to } => {
            let body = to.map(|to| json!({"to": to}));
            let answer = api.put("/control/v1/step_down", body.as_ref()).await?;
            out.print(&answer, || {
                format!(
                    "leadership moved from replica {} to replica {} (term {})",
                    cell(answer.get("previous_leader")),
                    cell(answer.get("new_leader")),
                    cell(answer.get("term"))
                )
            });
        }
    }
    Ok(())
}

/// The replica asked; then, when that is not the leader, the leader (only it knows the lag).
/// The note says why the lag is missing, when it is.
async fn status_from_leader(api: &Api) -> Result<(Value, Option<String>), CliError> {
    let asked = api.get("/control/v1/cluster").await?;
    let Some(leader) = asked["leader_id"].as_u64() else {
        return Ok((asked, Some("no leader known: lag unknown".into())));
    };
    if asked["node_id"].as_u64() == Some(leader) {
        return Ok((asked, None));
    }
    let addr = asked["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["id"].as_u64() == Some(leader))
        .and_then(|m| m["addr"].as_str())
        .map(str::to_string);
    let Some(addr) = addr else {
        return Ok((
            asked,
            Some(format!("leader {leader} has no address: lag unknown")),
        ));
    };
    match api.at(&addr)?.get("/control/v1/cluster").await {
        Ok(from_leader) if from_leader["node_id"].as_u64() == Some(leader) => {
            Ok((from_leader, None))
        }
        Ok(_) => Ok((
            asked,
            Some(format!("{addr} is no longer the leader: lag unknown")),
        )),
        Err(e) => Ok((
            asked,
            Some(format!("leader {leader} at {addr}: {e}: lag unknown")),
        )),
    }
}

fn cluster_text(status: &Value) -> String {
    let rows = status["members"].as_array().into_iter().flatten().map(|m| {
        vec![
            cell(m.get("id")),
            cell(m.get("addr")),
            cell(m.get("role")),
            cell(m.get("matched_index")),
            cell(m.get("lag")),
        ]
    });
    format!(
        "Leader: {}\nTerm: {}\nApplied index: {} (on replica {})\n{}",
        cell(status.get("leader_id")),
        cell(status.get("term")),
        cell(status.get("last_applied")),
        cell(status.get("node_id")),
        table(&["Id", "Addr", "Role", "Matched index", "Lag"], rows)
    )
}
