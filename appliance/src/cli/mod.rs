//! The operator CLI: the `storcon` subcommands that talk to a running cluster's API, beside
//! `run`, `check-config` and `demo`. They mirror upstream's `storcon_cli` (same subcommand and
//! flag names) where storcon serves the route, and add storcon's own (`cluster status`,
//! `members`, `step-down`, `--dry-run`, `--wait`).
//!
//! One file per group: `nodes` (registry, delete, tombstones, drop), `node_ops` (drain and
//! fill), `tenants` (list, describe, policy, config, preferred AZ, drop), `shards` (split,
//! migrate, cancel), `cluster` (Raft status, membership, step-down); `client` and `output` are
//! shared, and `progress` polls for `--wait`.
//!
//! Exit codes: 0 done; 1 the server refused or failed (its `msg` and status on stderr), or an
//! operation waited for failed; 2 bad arguments (clap's usage error, or a missing `--api`);
//! 3 the API could not be reached; 4 `--wait` timed out.

pub mod client;
mod cluster;
mod node_ops;
mod nodes;
mod output;
mod progress;
mod shards;
mod tenants;

use clap::{Args, Subcommand};

use client::Api;
pub use client::CliError;
use output::Out;

/// Options every API subcommand takes, before or after its name.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Any replica's API (`http://host:port` or `host:port`); followers forward to the leader.
    #[arg(long, env = "STORCON_API", global = true)]
    pub api: Option<String>,
    /// Bearer token for an API with auth (an `admin` scope token for most subcommands).
    #[arg(long, env = "STORCON_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON (the server's answer) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// For an `https://` API: the CA bundle (PEM) its certificate is verified against, instead
    /// of the system's roots.
    #[arg(long, env = "STORCON_CA_FILE", global = true)]
    pub ca_file: Option<std::path::PathBuf>,
    /// A client certificate (PEM) for a listener that requires one (`[tls] client_ca_file`);
    /// with `--key-file`.
    #[arg(long, env = "STORCON_CERT_FILE", global = true)]
    pub cert_file: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "STORCON_KEY_FILE", global = true)]
    pub key_file: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Nodes(nodes::NodesCmd),
    #[command(flatten)]
    NodeOps(node_ops::NodeOpsCmd),
    #[command(flatten)]
    Tenants(tenants::TenantsCmd),
    #[command(flatten)]
    Shards(shards::ShardsCmd),
    #[command(flatten)]
    Cluster(cluster::ClusterCmd),
}

/// Runs one API subcommand; the error tells the exit code.
pub async fn run(command: Command, args: &GlobalArgs) -> Result<(), CliError> {
    let api = Api::new(args)?;
    let out = Out { json: args.json };
    match command {
        Command::Nodes(c) => nodes::run(c, &api, out).await,
        Command::NodeOps(c) => node_ops::run(c, &api, out).await,
        Command::Tenants(c) => tenants::run(c, &api, out).await,
        Command::Shards(c) => shards::run(c, &api, out).await,
        Command::Cluster(c) => cluster::run(c, &api, out).await,
    }
}

/// A `--config`-style JSON argument that must be an object.
fn json_object(
    flag: &str,
    raw: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, CliError> {
    match serde_json::from_str(raw) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(CliError::Usage(format!("{flag}: not a JSON object"))),
        Err(e) => Err(CliError::Usage(format!("{flag}: not JSON: {e}"))),
    }
}
