//! Membership changes and the planned leader handover:
//! `POST /control/v1/members`, `DELETE /control/v1/members/{id}` and `PUT /control/v1/step_down`
//! (leader-served, admin), and `POST /raft/elect` (peers only: the leader handing over asks its
//! chosen successor to campaign).
//!
//! The workflows live in the binary (`appliance/src/membership.rs`, `appliance/src/step_down.rs`)
//! behind [`MembershipOps`]; each handler parses, calls one method, and answers the new cluster
//! status.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use state_machine::ReplicaId;

use crate::app::AppState;
use crate::cluster::{self, ClusterStatus};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::operations::{Op, OperationError};

/// `POST /control/v1/members`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    pub id: ReplicaId,
    pub addr: String,
}

/// `PUT /control/v1/step_down` (the body is optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDownRequest {
    #[serde(default)]
    pub to: Option<ReplicaId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepDownResponse {
    pub previous_leader: ReplicaId,
    pub new_leader: ReplicaId,
    pub term: u64,
}

/// The membership workflows, implemented by the binary.
pub trait MembershipOps: Send + Sync {
    /// Adds `id` at `addr` as a learner, waits until it has caught up, then makes it a voter.
    fn add(&self, id: ReplicaId, addr: String) -> Op<'_, ()>;
    /// Removes a voter or a learner.
    fn remove(&self, id: ReplicaId) -> Op<'_, ()>;
    /// Hands leadership to a caught-up voter (`to`, or one chosen).
    fn step_down(&self, to: Option<ReplicaId>) -> Op<'_, StepDownResponse>;
    /// This replica was asked by its leader to campaign now (handover).
    fn elect(&self) -> Op<'_, ()>;
    /// This leader is handing over: leader-served requests answer 503 (a linearizable read
    /// would send heartbeats and renew the followers' lease the handover waits out).
    fn handing_over(&self) -> bool;
}

fn ops(app: &AppState) -> Result<Arc<dyn MembershipOps>, ApiError> {
    app.membership
        .clone()
        .ok_or_else(|| ApiError::Unavailable("membership changes are not served here".into()))
}

/// Checks an address the way peers will use it: `host:port`, nothing else.
fn check_addr(addr: &str) -> Result<(), ApiError> {
    let bad = |why: &str| Err(ApiError::BadRequest(format!("addr {addr:?}: {why}")));
    let Some((host, port)) = addr.rsplit_once(':') else {
        return bad("expected host:port");
    };
    if host.is_empty() || host.contains(['/', ' ', '@', '?', '#']) {
        return bad("expected host:port");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => bad("the port must be 1..65535"),
    }
}

pub async fn add(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<AddMemberRequest>,
) -> Result<Json<ClusterStatus>, ApiError> {
    check_addr(&req.addr)?;
    tracing::info!(id = %req.id, addr = %req.addr, "adding a member");
    ops(&app)?.add(req.id, req.addr).await?;
    Ok(cluster::status(State(app)).await)
}

pub async fn remove(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ClusterStatus>, ApiError> {
    let id: ReplicaId = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("replica id {id:?} is not a number")))?;
    tracing::info!(%id, "removing a member");
    ops(&app)?.remove(id).await?;
    Ok(cluster::status(State(app)).await)
}

pub async fn step_down(
    State(app): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<StepDownResponse>, ApiError> {
    let req: StepDownRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StepDownRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("step_down body: {e}")))?
    };
    Ok(Json(ops(&app)?.step_down(req.to).await?))
}

/// `POST /raft/elect`: only a peer (the leader handing over) may ask; answered at once.
pub async fn elect(State(app): State<AppState>, headers: HeaderMap) -> Result<Json<()>, ApiError> {
    crate::raft_rpc::check(&app, &headers)?;
    ops(&app)?.elect().await?;
    Ok(Json(()))
}

/// A membership error's message for the operator when openraft refuses a change.
pub fn in_flight(e: impl std::fmt::Display) -> OperationError {
    OperationError::Conflict(format!("a membership change is in flight: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_port() {
        for ok in ["127.0.0.1:7004", "storcon-4.internal:80", "[::1]:7001"] {
            assert!(check_addr(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1",
            ":80",
            "host:0",
            "host:99999",
            "http://h:1",
            "h:x",
        ] {
            assert!(check_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_refuse_unknown_keys() {
        assert!(
            serde_json::from_str::<AddMemberRequest>(r#"{"id":4,"addr":"a:1","x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<StepDownRequest>(r#"{"too":4}"#).is_err());
        let r: StepDownRequest = serde_json::from_str(r#"{"to":4}"#).expect("parses");
        assert_eq!(r.to, Some(ReplicaId(4)));
    }
}
