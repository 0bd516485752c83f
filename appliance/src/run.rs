//! `storcon run`: one replica, from its config file to a served, admitted Raft member.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use raft_store::{
    Db, FormationMarker, HttpNetworkFactory, LogStore, Raft, Refusals, StateMachineStore,
};
use storcon_http::{AppState, HttpAuth};

use crate::config::Config;
use crate::formation::{Formation, enter_raft};
use crate::leadership;
use crate::membership::Membership;
use crate::step_down::{Handover, StepDown};

/// Exit status when start-up is refused to protect the cluster (e.g. a wiped data dir).
pub const EXIT_REFUSED: i32 = 3;

/// A client for calls out (peers, pageservers, the compute hook); `tls` is what it verifies
/// HTTPS servers against (and, for peers, the certificate it presents), else the system's roots.
fn http_client(
    connect_timeout: Duration,
    tls: Option<&storcon_tls::rustls::ClientConfig>,
) -> anyhow::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(30));
    crate::tls::with_tls(builder, tls)
        .build()
        .context("cannot build HTTP client")
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let node_id = config.node_id;
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let (db, pristine) = tokio::task::spawn_blocking({
        let dir = data_dir.clone();
        move || -> anyhow::Result<(Db, bool)> {
            let db = Db::open(&dir, node_id)?;
            let pristine = db.is_pristine_blocking()?;
            Ok((db, pristine))
        }
    })
    .await??;
    let marker = FormationMarker::new(&data_dir);
    if !pristine {
        marker
            .remove()
            .context("cannot remove stale formation marker")?;
    }
    let sm = tokio::task::spawn_blocking({
        let db = db.clone();
        move || StateMachineStore::open(db)
    })
    .await??;
    let state = sm.shared_state();
    let audit = sm.audit();
    let backup = sm.backup_source(node_id);

    let auth = config.loaded_auth.clone();
    let peer_token = auth.as_ref().and_then(|a| a.peer_token.clone());
    let pageserver_token = auth
        .as_ref()
        .and_then(|a| a.pageserver_token.as_ref())
        .map(|t| t.token().to_owned());
    let http_auth = match &auth {
        Some(a) => HttpAuth::new(a.verifier.clone(), peer_token.clone()),
        None => HttpAuth::disabled(),
    };
    tracing::info!(
        auth = auth.is_some(),
        peer_token = peer_token.is_some(),
        pageserver_token = pageserver_token.is_some(),
        "authentication"
    );

    let tls = config.loaded_tls.clone();
    let scheme = tls.peer_scheme();
    tracing::info!(
        https = tls.listener.is_some(),
        client_certs_required = config
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some()),
        https_pageservers = config.controller.use_https_pageserver_api,
        "TLS"
    );
    let raft_client = http_client(Duration::from_millis(500), tls.peers.as_ref())?;
    let forward_client = http_client(Duration::from_secs(2), tls.peers.as_ref())?;
    let refusals = Refusals::default();
    let raft = Raft::new(
        node_id,
        Arc::new(config.raft_config()?),
        HttpNetworkFactory::new(raft_client)
            .with_authorization(peer_token.as_ref().map(|t| t.header_value()))
            .with_scheme(scheme)
            .with_refusals(refusals.clone()),
        LogStore::new(db),
        sm,
    )
    .await
    .context("cannot start raft")?;

    tokio::spawn(storcon_http::metrics::watch_leader_changes(raft.clone()));
    let members = config.members();
    let formation = Arc::new(Formation::new(
        node_id,
        &members,
        pristine,
        marker,
        config.cluster.join,
        raft.clone(),
        state.clone(),
    ));
    let app = AppState::new(
        node_id,
        config.advertised_addr(),
        members.clone(),
        raft.clone(),
        state,
        forward_client.clone(),
        formation.clone(),
    )
    .with_auth(http_auth)
    .with_backup(backup)
    .with_peer_scheme(scheme)
    .with_pageserver_https(config.controller.use_https_pageserver_api)
    .with_failpoints(Arc::new(storcon_failpoints::Failpoints::new(
        config.testing.failpoints,
    )));
    let handover = Arc::new(Handover::default());
    let app = {
        let step_down = StepDown {
            node_id,
            raft: raft.clone(),
            handover: handover.clone(),
            http: forward_client.clone(),
            peer_token: peer_token.clone(),
            lease: Duration::from_millis(config.raft.election_timeout_max_ms),
        };
        let membership = Membership {
            node_id,
            raft: raft.clone(),
            state: app.state.clone(),
            in_flight: Default::default(),
            step_down,
        };
        app.with_membership(Arc::new(membership), refusals)
    };
    let listener = tokio::net::TcpListener::bind(&config.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen_addr))?;
    tracing::info!(%node_id, addr = %config.listen_addr, pristine, scheme = ?scheme, "serving");
    let router = storcon_http::router(app.clone());
    let server = match tls.listener.clone() {
        None => tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(crate::signals::shutdown_signal())
                .await
        }),
        Some(server_config) => {
            let listener = storcon_tls::server::TlsListener::new(listener, server_config)
                .context("cannot serve TLS")?;
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(crate::signals::shutdown_signal())
                    .await
            })
        }
    };

    let mut server = server;
    // A stop (SIGTERM, SIGINT) while still waiting for peers ends the process: the listener
    // has stopped, so no peer could reach this replica to form or admit it anyway.
    let admitted = tokio::select! {
        admitted = enter_raft(
            &formation,
            &raft,
            &members,
            crate::formation::PeerCalls {
                client: &forward_client,
                token: peer_token.as_ref(),
                scheme,
            },
            &data_dir,
            || app.admit_raft(),
        ) => admitted,
        served = &mut server => {
            let _ = raft.shutdown().await;
            served.context("server task failed")?.context("HTTP server failed")?;
            tracing::info!("stopped before taking part in Raft");
            return Ok(());
        }
    };
    if let Err(refused) = admitted {
        tracing::error!("{refused}");
        eprintln!("storcon: {refused}");
        let _ = raft.shutdown().await;
        std::process::exit(EXIT_REFUSED);
    }

    let pageserver_http = http_client(Duration::from_secs(1), tls.pageservers.as_ref())?;
    let hook_http = http_client(Duration::from_secs(1), tls.compute_hook.as_ref())?;
    let watcher = tokio::spawn(
        leadership::Leadership {
            app: app.clone(),
            node_id,
            address: scheme.base(&config.advertised_addr()),
            // Twice the leader lease: long enough for a slow peer on a busy machine. This bounds
            // the time a cut-off leader keeps acting; pageservers that heard the new term
            // already refuse it, and it can never mint a generation.
            quorum_timeout: Duration::from_millis(2 * config.raft.election_timeout_max_ms),
            handover,
            replica: crate::controller::Replica {
                raft: raft.clone(),
                proposer: raft_store::client::Proposer::new(
                    raft.clone(),
                    config.raft.batch_proposals,
                ),
                state: app.state.clone(),
                audit,
                cfg: config.controller.clone(),
                http: pageserver_http,
                hook_http,
                pageserver_token,
                failpoints: app.failpoints.clone(),
            },
        }
        .run(),
    );
    let detector = tokio::spawn(crate::dead_leader::run(
        raft.clone(),
        app.leader_contact.clone(),
        crate::dead_leader::Timing {
            lease: Duration::from_millis(config.raft.election_timeout_max_ms),
            heartbeat: Duration::from_millis(config.raft.heartbeat_interval_ms),
        },
    ));
    let served = server.await.context("server task failed")?;
    detector.abort();
    watcher.abort();
    let _ = raft.shutdown().await;
    served.context("HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}
