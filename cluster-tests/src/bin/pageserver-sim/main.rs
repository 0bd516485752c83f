//! `pageserver-sim`: one simulated Neon pageserver per process, for multi-process controller
//! tests. It keeps its locations (mode, generation, stripe, secondary progress, timelines with
//! LSNs) in `DIR/locations.json` (a snapshot) and `DIR/locations.journal` (changes since),
//! re-attaches to the controller before serving, refuses stale generations and lower
//! controller terms, and records every location change in `DIR/history.jsonl` for the chaos
//! checkers.
//!
//! Modules: `cli` (flags), `wire` and `ids` (JSON and id formats), `model` (state and pure
//! transitions), `store` (snapshot and journal of the state), `history` (append-only log),
//! `append_log` (durable appends, for both), `upcall` (controller client), `startup`
//! (re-attach), `app` (lock, term fencing, transactions), `routes` and the `api_*` handlers.

mod api_debug;
mod api_location;
mod api_secondary;
mod api_tenant;
mod api_timeline;
mod app;
mod append_log;
mod cli;
mod error;
mod history;
mod ids;
mod model;
mod routes;
mod startup;
mod store;
mod upcall;
mod wire;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::app::App;
use crate::cli::Args;
use crate::history::History;
use crate::store::Store;
use crate::upcall::Controller;

/// Wall-clock time in the RFC 3339 form the pageserver API uses.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("pageserver-sim failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.listen.port() == 0 {
        bail!("--listen needs a fixed port: it is registered with the controller before binding");
    }
    let split = args.split_behaviour()?;
    let (mut store, state) = Store::open(&args.data_dir)?;
    let history = History::new(&args.data_dir, args.node_id);
    let controller = Controller::new(&args.controller, args.token.clone())?;

    // The API must not be reachable before re-attach is applied and durable.
    let state = startup::reattach(&args, &controller, state, &mut store, &history).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        "node {} serving on {} with {} locations",
        args.node_id,
        args.listen,
        state.locations.len()
    );
    let app = Arc::new(App::new(
        args.node_id,
        state,
        store,
        history,
        controller,
        split,
    ));
    axum::serve(listener, routes::router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!("no SIGTERM handler ({e}); stopping on ctrl-c only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}
