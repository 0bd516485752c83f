//! Shards: `tenant-shard-split` (with `--dry-run`, `--wait`), `tenant-shard-migrate` (with
//! `--dry-run`), `tenant-shard-migrate-secondary`, `tenant-shard-cancel-reconcile`.

use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};

use super::client::{Api, CliError};
use super::output::{Out, cell, moves, table};
use super::progress;

#[derive(Subcommand, Debug)]
pub enum ShardsCmd {
    /// Split every shard of a tenant (PUT /control/v1/tenant/:id/shard_split).
    #[command(name = "tenant-shard-split")]
    Split {
        #[arg(long)]
        tenant_id: String,
        #[arg(long)]
        shard_count: u8,
        /// Only when splitting an unsharded tenant.
        #[arg(long)]
        stripe_size: Option<u32>,
        /// Print the children it would create and where, and split nothing.
        #[arg(long, conflicts_with = "wait")]
        dry_run: bool,
        /// After the split, show progress until every child is attached and reconciled.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Move a shard's attachment to a node (PUT /control/v1/tenant/:shard/migrate).
    #[command(name = "tenant-shard-migrate")]
    Migrate {
        #[arg(long)]
        tenant_shard_id: String,
        #[arg(long)]
        node: u64,
        /// Warm the destination up as a secondary first.
        #[arg(long)]
        prewarm: bool,
        /// Move even to a node the scheduler scores worse, or one not available.
        #[arg(long)]
        override_scheduler: bool,
        /// Print the move it would make after the server's checks, and move nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Make a node the shard's only secondary (PUT /control/v1/tenant/:shard/migrate_secondary).
    #[command(name = "tenant-shard-migrate-secondary")]
    MigrateSecondary {
        #[arg(long)]
        tenant_shard_id: String,
        #[arg(long)]
        node: u64,
    },
    /// End a migration that has not cut over (PUT /control/v1/tenant/:shard/cancel_reconcile).
    #[command(
        name = "tenant-shard-cancel-reconcile",
        visible_alias = "cancel-reconcile"
    )]
    CancelReconcile {
        #[arg(long)]
        tenant_shard_id: String,
    },
}

pub async fn run(cmd: ShardsCmd, api: &Api, out: Out) -> Result<(), CliError> {
    match cmd {
        ShardsCmd::Split {
            tenant_id,
            shard_count,
            stripe_size,
            dry_run,
            wait,
            timeout,
        } => {
            let body = json!({"new_shard_count": shard_count, "new_stripe_size": stripe_size});
            let path = format!("/control/v1/tenant/{tenant_id}/shard_split");
            if dry_run {
                let plan = api
                    .put(&format!("{path}?dry_run=true"), Some(&body))
                    .await?;
                out.print(&plan, || moves(&plan));
                return Ok(());
            }
            let split = api.put(&path, Some(&body)).await?;
            if !out.json {
                println!("{}", new_shards(&split));
            }
            if wait {
                let count = split["new_shards"].as_array().map_or(0, Vec::len);
                progress::wait_split(api, out, &tenant_id, count, Duration::from_secs(timeout))
                    .await?;
            }
            if out.json {
                out.print(&split, String::new);
            }
        }
        ShardsCmd::Migrate {
            tenant_shard_id,
            node,
            prewarm,
            override_scheduler,
            dry_run,
        } => {
            let body = json!({
                "node_id": node,
                "migration_config": {
                    "prewarm": prewarm,
                    "override_scheduler": override_scheduler,
                },
            });
            let path = format!("/control/v1/tenant/{tenant_shard_id}/migrate");
            if dry_run {
                let plan = api
                    .put(&format!("{path}?dry_run=true"), Some(&body))
                    .await?;
                out.print(&plan, || moves(&plan));
                return Ok(());
            }
            let answer = api.put(&path, Some(&body)).await?;
            out.print(&answer, || {
                format!("migration of {tenant_shard_id} to node {node} requested")
            });
        }
        ShardsCmd::MigrateSecondary {
            tenant_shard_id,
            node,
        } => {
            let body = json!({"node_id": node});
            let answer = api
                .put(
                    &format!("/control/v1/tenant/{tenant_shard_id}/migrate_secondary"),
                    Some(&body),
                )
                .await?;
            out.print(&answer, || {
                format!("secondary of {tenant_shard_id} set to node {node}")
            });
        }
        ShardsCmd::CancelReconcile { tenant_shard_id } => {
            let answer = api
                .put(
                    &format!("/control/v1/tenant/{tenant_shard_id}/cancel_reconcile"),
                    None,
                )
                .await?;
            out.print(&answer, || {
                format!("reconcile of {tenant_shard_id} cancelled")
            });
        }
    }
    Ok(())
}

fn new_shards(split: &Value) -> String {
    let rows = split["new_shards"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| vec![cell(Some(s))]);
    table(&["New shard"], rows)
}
