//! Leader-only duties, started when this replica leads and dropped when it stops leading.
//!
//! Today there is one: the new leader records itself (`RecordLeader`) as the first command of
//! its term, which also tells every replica who leads and since when (`GET /control/v1/leader`).
//! Later services (heartbeats, reconcilers) start only after that entry has applied.

use std::time::Duration;

use openraft::ServerState;
use raft_store::Raft;
use state_machine::Command;
use tracing::Instrument;

/// Watches Raft metrics until shutdown; exits the process if Raft stops with a fatal error, so
/// a supervisor restarts it from its (intact) data dir.
pub async fn run(raft: Raft, node_id: u64, address: String) {
    let mut metrics = raft.metrics();
    let mut recorded_term = 0u64;
    loop {
        let (state, term, fatal) = {
            let m = metrics.borrow_and_update();
            (m.state, m.current_term, m.running_state.clone().err())
        };
        if let Some(fatal) = fatal {
            tracing::error!(error = %fatal, "raft stopped with a fatal error; exiting");
            std::process::exit(70);
        }
        if state == ServerState::Leader && term > recorded_term {
            let span = tracing::info_span!("leadership", term);
            let recorded = record_leader(&raft, node_id, term, &address)
                .instrument(span)
                .await;
            if recorded {
                recorded_term = term;
                tracing::info!(term, "leading; leader record applied");
                continue;
            }
            // Not recorded (lost leadership or no quorum yet): look again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

async fn record_leader(raft: &Raft, node_id: u64, term: u64, address: &str) -> bool {
    let command = Command::RecordLeader {
        node_id,
        term,
        address: format!("http://{address}/"),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    // Bounded: a leader without a quorum would otherwise wait here forever.
    match tokio::time::timeout(Duration::from_secs(5), raft.client_write(command)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "could not record leadership");
            false
        }
        Err(_) => {
            tracing::debug!("leader record not committed within 5 s");
            false
        }
    }
}
