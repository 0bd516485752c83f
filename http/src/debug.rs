//! `/debug/v1`: operator and test hooks.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use state_machine::ids::TenantShardId;
use state_machine::{Command, Generation, NodeId, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::propose::{propose, read_linearizable};

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachHookRequest {
    tenant_shard_id: TenantShardId,
    #[serde(default)]
    node_id: Option<NodeId>,
    #[serde(default)]
    generation_override: Option<i32>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct AttachHookResponse {
    #[serde(rename = "gen")]
    generation: Option<Generation>,
}

/// `POST /debug/v1/attach-hook`: attach a shard (created if missing) to a node in a new
/// generation, or detach it when `node_id` is null. Then the shard is reconciled like any other.
pub async fn attach_hook(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<AttachHookRequest>,
) -> Result<Json<AttachHookResponse>, ApiError> {
    let services = app.leader.get()?;
    let generation_override = req
        .generation_override
        .map(|g| {
            Generation::try_from(g).map_err(|_| {
                ApiError::BadRequest(format!("generation_override {g} must not be negative"))
            })
        })
        .transpose()?;
    let answer = propose(
        &app,
        Command::AttachHook {
            shard: req.tenant_shard_id,
            node_id: req.node_id,
            generation_override,
            config: req.config,
        },
    )
    .await?;
    let Response::AttachHook(generation) = answer else {
        return Err(ApiError::Internal(format!(
            "unexpected answer to AttachHook: {answer:?}"
        )));
    };
    services
        .schedule_tenant(req.tenant_shard_id.tenant_id)
        .await?;
    Ok(Json(AttachHookResponse { generation }))
}
