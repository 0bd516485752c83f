//! Raft RPC endpoints and the formation probe, on the same listener as the API.
//!
//! Each RPC must name this replica in `x-storcon-target-node` (421 otherwise), and RPCs are
//! refused with 503 until start-up has admitted this replica to Raft.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use raft_store::{FormationStatus, TARGET_NODE_HEADER, TypeConfig};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;

pub const FORMATION_PATH: &str = "/raft/formation";
/// The node id of the peer asking `/raft/formation`.
pub const FROM_NODE_HEADER: &str = "x-storcon-from-node";

type RpcResult<T, E = RaftError<u64>> = Result<Json<Result<T, E>>, ApiError>;

fn check(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let target = headers
        .get(TARGET_NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if target != Some(app.node_id) {
        return Err(ApiError::Misdirected(format!(
            "raft rpc for node {target:?} reached node {}",
            app.node_id
        )));
    }
    if !app.raft_admitted() {
        return Err(ApiError::Unavailable(format!(
            "node {} is not serving raft yet",
            app.node_id
        )));
    }
    Ok(())
}

pub async fn append(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(rpc): ApiJson<AppendEntriesRequest<TypeConfig>>,
) -> RpcResult<AppendEntriesResponse<u64>> {
    check(&app, &headers)?;
    Ok(Json(app.raft.append_entries(rpc).await))
}

pub async fn vote(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(rpc): ApiJson<VoteRequest<u64>>,
) -> RpcResult<VoteResponse<u64>> {
    check(&app, &headers)?;
    Ok(Json(app.raft.vote(rpc).await))
}

pub async fn snapshot(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(rpc): ApiJson<InstallSnapshotRequest<TypeConfig>>,
) -> RpcResult<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
    check(&app, &headers)?;
    Ok(Json(app.raft.install_snapshot(rpc).await))
}

pub async fn formation(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<FormationStatus>, ApiError> {
    let asker = headers
        .get(FROM_NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Answering may fsync the formation marker: keep that off the async workers.
    let formation = app.formation.clone();
    match tokio::task::spawn_blocking(move || formation.status(asker)).await {
        Ok(status) => Ok(Json(status)),
        Err(e) => Err(ApiError::Internal(format!("formation probe failed: {e}"))),
    }
}
