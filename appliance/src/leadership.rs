//! Leader-only duties, started when this replica leads and stopped when it stops leading.
//!
//! On becoming leader in term T the replica first records itself (`RecordLeader`, its first
//! command of the term). Only after that entry applied does it start the controller services
//! for T; they are cancelled the moment metrics show another term or another role, which also
//! aborts their in-flight pageserver calls. A planned handover (`step_down.rs`) stops them
//! the same way and keeps them stopped while it runs.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use state_machine::{Command, ReplicaId, Term};
use storcon_http::AppState;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller::operations::Operations;
use crate::controller::{Controller, Replica};

pub struct Leadership {
    pub app: AppState,
    pub node_id: ReplicaId,
    /// This replica's base URL (`http://host:port` or `https://`), as the leader record shows.
    pub address: String,
    /// Handed to the controller of each term.
    pub replica: Replica,
    /// How long a quorum may take to confirm this leader before its services stop.
    pub quorum_timeout: Duration,
    /// Set while this leader hands over: its services stay stopped.
    pub handover: Arc<crate::step_down::Handover>,
}

const QUORUM_CHECK_EVERY: Duration = Duration::from_secs(1);

struct Running {
    term: Term,
    cancel: CancellationToken,
}

impl Leadership {
    /// Watches Raft metrics until shutdown; exits the process if Raft stops with a fatal error,
    /// so a supervisor restarts it from its (intact) data dir.
    pub async fn run(self) {
        let mut metrics = self.replica.raft.metrics();
        let mut running: Option<Running> = None;
        loop {
            let (state, term, fatal) = {
                let m = metrics.borrow_and_update();
                (m.state, Term(m.current_term), m.running_state.clone().err())
            };
            if let Some(fatal) = fatal {
                tracing::error!(error = %fatal, "raft stopped with a fatal error; exiting");
                std::process::exit(70);
            }
            let leading = state == ServerState::Leader;
            let handing_over = self.handover.active();
            if let Some(r) = &running
                && (!leading || r.term != term || handing_over)
            {
                tracing::info!(
                    term = %r.term,
                    handing_over,
                    "leadership lost or handed over; stopping controller services"
                );
                r.cancel.cancel();
                self.app.leader.set(None);
                running = None;
            }
            if handing_over && running.is_none() {
                self.handover.mark_fenced();
            }
            if leading && running.is_none() && !handing_over {
                let recorded = self
                    .record_leader(term)
                    .instrument(tracing::info_span!("leadership", %term))
                    .await;
                if recorded {
                    running = Some(self.start_controller(term));
                } else {
                    // Lost leadership or no quorum yet: look again shortly.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
            tokio::select! {
                _ = self.handover.changed() => {}
                changed = metrics.changed() => {
                    if changed.is_err() {
                        if let Some(r) = running {
                            r.cancel.cancel();
                        }
                        return;
                    }
                }
                // openraft keeps a leader cut off from its peers in the Leader role until it
                // hears a higher term; its services must stop long before that.
                _ = tokio::time::sleep(QUORUM_CHECK_EVERY), if running.is_some() => {
                    if !self.quorum_confirms().await
                        && let Some(r) = running.take()
                    {
                        tracing::warn!(term = %r.term, "no quorum confirms this leader; stopping controller services");
                        r.cancel.cancel();
                        self.app.leader.set(None);
                    }
                }
            }
        }
    }

    /// A ReadIndex round: a quorum still follows this leader.
    async fn quorum_confirms(&self) -> bool {
        let check = self.replica.raft.ensure_linearizable();
        matches!(
            tokio::time::timeout(self.quorum_timeout, check).await,
            Ok(Ok(_))
        )
    }

    fn start_controller(&self, term: Term) -> Running {
        let cancel = CancellationToken::new();
        let controller = Controller::new(self.replica.clone(), term, cancel.clone());
        self.app
            .leader
            .set(Some(Arc::new(Operations(controller.clone()))));
        tokio::spawn(
            controller
                .run()
                .instrument(tracing::info_span!("controller", %term)),
        );
        tracing::info!(%term, "leading; controller services started");
        Running { term, cancel }
    }

    async fn record_leader(&self, term: Term) -> bool {
        let command = Command::RecordLeader {
            node_id: self.node_id,
            term,
            address: format!("{}/", self.address),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        // Bounded: a leader without a quorum would otherwise wait here forever.
        match raft_store::client::propose(&self.replica.proposer, command, Duration::from_secs(5))
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, "could not record leadership");
                false
            }
        }
    }
}
