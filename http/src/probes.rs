//! Probes, always answered by the replica asked.
//!
//! - `/status`: the HTTP server is up: `null`, as upstream, or, once peers refused this
//!   replica's Raft RPCs because it is not (or no longer) a member, or it applied its own
//!   removal, `{"removed": true, "reason": ...}`.
//! - `/live`: Raft is running without a fatal error and this replica is a cluster member.
//! - `/ready`: a leader is known and this replica has applied everything the leader had applied
//!   when asked (the leader itself: it has applied an entry of its own term).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use openraft::ServerState;

use crate::app::AppState;
use crate::cluster::ClusterStatus;
use crate::error::ApiError;

pub async fn status(State(app): State<AppState>) -> Json<serde_json::Value> {
    match removal(&app) {
        None => Json(serde_json::Value::Null),
        Some(reason) => Json(serde_json::json!({"removed": true, "reason": reason})),
    }
}

/// Why this replica is no longer a member, if it knows: a peer refused it as a non-member, or
/// it applied the membership change that removed it.
fn removal(app: &AppState) -> Option<String> {
    if let Some(r) = app.refusals.last() {
        return Some(format!("node {} refused this replica: {}", r.by, r.msg));
    }
    app.state.read().removed_replica(app.node_id).map(|r| {
        format!(
            "node {} was removed from the cluster at log index {}",
            r.id, r.removed_at
        )
    })
}

pub async fn live(State(app): State<AppState>) -> Result<Json<()>, ApiError> {
    let m = app.metrics();
    if let Err(fatal) = &m.running_state {
        return Err(ApiError::Unavailable(format!("raft stopped: {fatal}")));
    }
    let member = m
        .membership_config
        .membership()
        .nodes()
        .any(|(id, _)| *id == app.node_id);
    if let Some(reason) = removal(&app) {
        return Err(ApiError::Unavailable(format!(
            "node {} is not a member: {reason}",
            app.node_id
        )));
    }
    if !member {
        return Err(ApiError::Unavailable(format!(
            "node {} is not (yet) a member of a formed cluster",
            app.node_id
        )));
    }
    Ok(Json(()))
}

const LEADER_ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// A leader whose quorum last acknowledged it longer ago than this is not ready.
const QUORUM_ACK_MAX_MS: u64 = 3000;

pub async fn ready(State(app): State<AppState>) -> Result<Json<()>, ApiError> {
    let m = app.metrics();
    let applied = m.last_applied;
    let Some(leader) = m.current_leader else {
        return Err(ApiError::Unavailable("no leader is known".into()));
    };
    if leader == app.node_id {
        let own_term_applied = m.state == ServerState::Leader
            && applied.is_some_and(|l| l.leader_id.term == m.current_term);
        if !own_term_applied {
            return Err(ApiError::Unavailable(
                "leader has not yet applied an entry of its own term".into(),
            ));
        }
        // A leader cut off from its peers still believes it leads; it is not ready.
        return match m.millis_since_quorum_ack {
            Some(ms) if ms <= QUORUM_ACK_MAX_MS => Ok(Json(())),
            other => Err(ApiError::Unavailable(format!(
                "leader has no recent quorum acknowledgement (last {other:?} ms ago)"
            ))),
        };
    }
    let addr = m
        .membership_config
        .membership()
        .get_node(&leader)
        .map(|n| n.addr.clone())
        .ok_or_else(|| ApiError::Unavailable(format!("leader {leader} has no known address")))?;
    let mut ask = app
        .forward_client
        .get(format!(
            "{}/control/v1/cluster",
            app.peer_scheme.base(&addr)
        ))
        .timeout(LEADER_ASK_TIMEOUT);
    if let Some(token) = app.auth.peer_token() {
        ask = ask.header(axum::http::header::AUTHORIZATION, token.header_value());
    }
    let leader_status: ClusterStatus = ask
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| ApiError::Unavailable(format!("cannot ask leader {leader}: {e}")))?
        .json()
        .await
        .map_err(|e| ApiError::Unavailable(format!("bad answer from leader {leader}: {e}")))?;
    let ours = applied.map(|l| l.index);
    if ours >= leader_status.last_applied {
        Ok(Json(()))
    } else {
        Err(ApiError::Unavailable(format!(
            "applied {ours:?}, leader {leader} has applied {:?}",
            leader_status.last_applied
        )))
    }
}
