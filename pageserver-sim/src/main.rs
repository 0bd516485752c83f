//! `pageserver-sim`: a stand-in Neon pageserver, one per process, for the multi-process tests in
//! `cluster-tests`, `storcon-bench` and `storcon demo`. It talks to the controller over HTTP only
//! and depends on no workspace crate that describes the wire: `wire` is its own reading of the
//! pageserver API and of the upcalls. (It shares `storcon-tls`, which knows no wire format, for
//! its optional HTTPS listener, `--https-port`.)
//!
//! What it owns:
//! - **Persisted locations.** Mode, generation, stripe, secondary progress and timelines with
//!   LSNs live in `DIR/locations.json` (a snapshot) plus `DIR/locations.journal` (one fsynced
//!   line per change since); a change is durable before it is published or answered.
//! - **Re-attach on start.** Before it binds its port it registers and re-attaches through
//!   `/upcall/v1/re-attach` (retried while the controller is unavailable) and applies the answer
//!   to its local locations only: keep attached at the new generation, demote to secondary, or
//!   drop.
//! - **Generation and term checks.** An attach at a generation older than any it ever held for
//!   the shard is refused (400, as a real pageserver does), and a request whose
//!   `x-storcon-term` is lower than the highest it has seen is refused (409); the highest term
//!   is persisted too.
//! - **Remote storage.** A directory shared by a fleet's simulators (`--remote-storage`) holds
//!   each shard's timelines and heatmap as upstream's bucket does; an attachment loads its
//!   timelines from it, and only a deletion removes anything.
//! - **Delete protocols.** A detach or timeline delete drops an attached shard's data only
//!   after `/upcall/v1/validate` confirms its generation; otherwise the data is kept
//!   (`retained`), as a real pageserver defers the deletion. Tenant delete (the controller's
//!   explicit order, as upstream) removes the local locations and the remote data of the shard,
//!   or with the unsharded id of every shard in every shard count. Both answer 202 while the
//!   remote part runs (`--delete-delay-ms`) and 404 once it is gone; a timeline delete asked
//!   again meanwhile is 409.
//! - **Download protocol.** A secondary downloads the layers its attached location's heatmap
//!   lists, at `--download-ms-per-layer`; an attachment uploads heatmaps only while its tenant
//!   config has a `heatmap_period`. `secondary/download?wait_ms` waits up to that long: 200
//!   when complete, 202 with progress before.
//! - Shard splits (children attached in the parent's generation, with injectable failure and
//!   stall), timelines, utilization, and `DIR/history.jsonl`: every location change made or
//!   refused and every validate answer, for the safety checkers in `cluster-tests`.
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
mod api_timeline_ops;
mod app;
mod append_log;
mod cli;
mod error;
mod history;
mod ids;
mod model;
mod remote;
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
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(storcon_tls::ReloadingIdentity::load(cert, key)?),
        _ => None,
    };
    let upcall_tls = match &args.controller_ca {
        Some(ca) => Some(storcon_tls::client::client_config(
            storcon_tls::pem::roots("--controller-ca", ca)?,
            identity.clone(),
        )?),
        None => None,
    };
    let controller = Controller::new(&args.controller, args.token.clone(), upcall_tls)?;

    // The API must not be reachable before re-attach is applied and durable.
    let tls = match (args.https_port, identity) {
        (Some(_), Some(identity)) => Some(storcon_tls::server::server_config(identity, None)?),
        _ => None,
    };
    let state = startup::reattach(&args, &controller, state, &mut store, &history).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let https_listener = match (args.https_port, tls) {
        (Some(port), Some(config)) => {
            let addr = std::net::SocketAddr::new(args.listen.ip(), port);
            let tcp = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            tracing::info!("node {} serving HTTPS on {addr}", args.node_id);
            Some(storcon_tls::server::TlsListener::new(tcp, config)?)
        }
        _ => None,
    };
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
        remote::RemoteStorage::new(args.remote_storage()),
        (split, args.behaviour()),
    ));
    let router = routes::router(app);
    if let Some(https) = https_listener {
        let router = router.clone();
        // Stops with the process; the HTTP listener below owns the graceful shutdown.
        tokio::spawn(async move {
            if let Err(e) = axum::serve(https, router).await {
                tracing::error!("serving HTTPS: {e}");
            }
        });
    }
    axum::serve(listener, router)
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
