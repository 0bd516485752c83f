//! `/debug/v1`: operator and test hooks.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use state_machine::ids::TenantShardId;
use state_machine::{Generation, NodeId};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::propose::read_linearizable;

/// Queues a reconcile for every shard that needs one; answers how many.
pub async fn reconcile_all(State(app): State<AppState>) -> Result<Json<usize>, ApiError> {
    Ok(Json(app.leader.get()?.reconcile_all()))
}

/// 200 `null` when replicated state and the leader's views agree, else 500 listing problems.
pub async fn consistency_check(State(app): State<AppState>) -> Result<Json<()>, ApiError> {
    crate::propose::read_linearizable(&app, |_| ()).await?;
    app.leader.get()?.consistency_check().await?;
    Ok(Json(()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectRequest {
    tenant_shard_id: TenantShardId,
}

#[derive(Debug, Serialize)]
pub struct InspectResponse {
    /// `[generation, node_id]` of the latest generation issued, or `null`.
    attachment: Option<(Generation, NodeId)>,
}

/// `POST /debug/v1/inspect`: the latest generation of a shard and the node it was issued to.
pub async fn inspect(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<InspectRequest>,
) -> Result<Json<InspectResponse>, ApiError> {
    let attachment = read_linearizable(&app, |s| {
        s.shard(&req.tenant_shard_id)
            .and_then(|sh| sh.generation.zip(sh.generation_pageserver))
    })
    .await?;
    Ok(Json(InspectResponse { attachment }))
}
