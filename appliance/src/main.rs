//! `storcon`: a storage controller for Neon-style pageservers, replicated over Raft.
//!
//! Subcommands: `run --config FILE` starts one replica; `demo` starts a three-replica cluster on
//! loopback for a first look; `backup`, `restore` and `recover` (see `recovery`) take a backup
//! from a running cluster and seed a one-member cluster from a backup or a survivor; the others
//! are the operator CLI (`cli`), which talks to a running cluster's API. `--api`, `--token` and
//! `--json` are global options (env `STORCON_API`, `STORCON_TOKEN`), `backup`'s too.
//!
//! What this crate owns: start-up (config, opening the store, formation, serving HTTP), following
//! leadership (`leadership`), and the leader-only controller (`controller`), which implements
//! the operations API that `storcon_http` declares. Everything durable goes through Raft.

mod cli;
mod config;
mod controller;
mod dead_leader;
mod demo;
mod formation;
mod leadership;
mod membership;
mod recovery;
mod run;
mod signals;
mod step_down;
mod tls;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "storcon",
    version,
    about = "Raft-replicated storage controller"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    api: cli::GlobalArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one replica from its config file.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a config file without starting anything.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Start three replicas on loopback in a temporary directory and run until interrupted.
    Demo {
        /// Keep data and logs here instead of a temporary directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Fetch a backup of the applied state from any replica, verify it, write it atomically.
    /// `--api` (any replica) and `--token` (admin scope) are the global options.
    Backup {
        #[arg(long)]
        out: PathBuf,
    },
    /// Offline: seed this replica's empty data dir as a one-member cluster from a backup.
    Restore {
        #[arg(long)]
        config: PathBuf,
        /// The backup file `storcon backup` wrote.
        #[arg(long = "from")]
        from: PathBuf,
        /// Raise every generation by this much: more than the old cluster may have issued
        /// per shard after the backup.
        #[arg(long, default_value_t = state_machine::DEFAULT_GENERATION_GAP)]
        generation_gap: u32,
    },
    /// Offline, after quorum loss: rewrite this surviving replica into a one-member cluster.
    Recover {
        #[arg(long)]
        config: PathBuf,
        /// Required: recover drops every other member.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value_t = state_machine::DEFAULT_GENERATION_GAP)]
        generation_gap: u32,
    },
    #[command(flatten)]
    Operator(cli::Command),
}

/// Loads a config or exits 2, as `run` does.
fn load_config_or_exit(path: &std::path::Path) -> config::Config {
    match config::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("storcon: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Ends a recovery subcommand: its message and exit status on failure.
fn finish(result: Result<(), recovery::RecoveryError>) -> anyhow::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("storcon: {e}");
            std::process::exit(e.exit_status());
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// `e` and its causes joined by ": ", leaving out a cause whose text is already there (openraft's
/// storage errors repeat their source in their own message).
fn cause_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Cmd::Run { config } => {
            let config = load_config_or_exit(&config);
            // The whole cause chain, on one line (a failed start once printed only
            // "cannot start raft").
            if let Err(e) = runtime.block_on(run::run(config)) {
                let cause = cause_chain(&e);
                tracing::error!("{cause}");
                eprintln!("storcon: {cause}");
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::CheckConfig { config } => match config::Config::load(&config) {
            Ok(c) => {
                println!(
                    "ok: node {} of members {:?}, listening on {} ({}), data in {}",
                    c.node_id,
                    c.members().keys().collect::<Vec<_>>(),
                    c.listen_addr,
                    match &c.tls {
                        None => "plain HTTP",
                        Some(t) if t.client_ca_file.is_some() =>
                            "HTTPS, client certificates required",
                        Some(_) => "HTTPS",
                    },
                    c.data_dir.display()
                );
                Ok(())
            }
            Err(e) => {
                eprintln!("storcon: {e:#}");
                std::process::exit(2);
            }
        },
        Cmd::Demo { dir } => runtime.block_on(demo::run(dir)),
        Cmd::Operator(command) => {
            if let Err(e) = runtime.block_on(cli::run(command, &cli.api)) {
                eprintln!("storcon: {e}");
                std::process::exit(e.exit_code());
            }
            Ok(())
        }
        Cmd::Backup { out } => {
            // The global options, which already read STORCON_API and STORCON_TOKEN.
            let Some(api) = cli.api.api.clone() else {
                eprintln!("storcon: backup needs --api URL (or STORCON_API)");
                std::process::exit(2);
            };
            let client = match cli::client::http_client(&cli.api, recovery::backup::FETCH_TIMEOUT) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("storcon: {e}");
                    std::process::exit(e.exit_code());
                }
            };
            let token = cli.api.token;
            finish(
                runtime
                    .block_on(recovery::backup::fetch_and_write(
                        &client,
                        &api,
                        token.as_deref(),
                        &out,
                    ))
                    .map(|summary| println!("{summary}")),
            )
        }
        Cmd::Restore {
            config: path,
            from,
            generation_gap,
        } => {
            let config = load_config_or_exit(&path);
            finish(recovery::restore::run(
                &config,
                &path,
                &from,
                generation_gap,
            ))
        }
        Cmd::Recover {
            config: path,
            force,
            generation_gap,
        } => {
            let config = load_config_or_exit(&path);
            finish(recovery::recover::run(
                &config,
                &path,
                force,
                generation_gap,
            ))
        }
    }
}
