//! `storcon`: a storage controller for Neon-style pageservers, replicated over Raft.
//!
//! Subcommands: `run --config FILE` starts one replica; `demo` starts a three-replica cluster on
//! loopback for a first look.
//!
//! What this crate owns: start-up (config, opening the store, formation, serving HTTP), following
//! leadership (`leadership`), and the leader-only controller (`controller`), which implements
//! the operations API that `storcon_http` declares. Everything durable goes through Raft.

mod config;
mod controller;
mod demo;
mod formation;
mod leadership;
mod membership;
mod run;
mod signals;
mod step_down;

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
            let config = match config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("storcon: {e:#}");
                    std::process::exit(2);
                }
            };
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
                    "ok: node {} of members {:?}, listening on {}, data in {}",
                    c.node_id,
                    c.members().keys().collect::<Vec<_>>(),
                    c.listen_addr,
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
    }
}
