//! `/debug/v1`: operator and test hooks.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | /debug/v1/reconcile_all | schedule and queue what needs it, wait up to 30 s; how many were waited for (0: quiescent); 500 if a reconcile failed |
//! | POST | /debug/v1/consistency_check | 200 `null`, or 500 listing what disagrees |
//! | POST | /debug/v1/inspect | `{"attachment": [generation, node_id] \| null}` |
//! | POST | /debug/v1/attach-hook | `{"gen"}`: attach a shard (created if missing) in a new generation, or detach it |
//! | GET | /debug/v1/tenant | `[TenantShardDump]`: every shard's record and observed locations |
//! | GET | /debug/v1/tenant/{tenant_id}/locate | `TenantLocateResponse`; 400 a shard not attached; 404 |
//! | GET | /debug/v1/scheduler | `{"nodes": {id: SchedulerNodeDump}}` |
//! | POST | /debug/v1/tenant/{tenant_id}/drop | 200 `null`: forgotten, no pageserver called; 404 |
//! | POST | /debug/v1/node/{node_id}/drop | 200 `null`: removed from the registry and every intent; 404; 409 during a split naming it |

use axum::Json;
use axum::extract::State;
use storcon_api::wire::{AttachHookRequest, AttachHookResponse, InspectRequest, InspectResponse};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, IdPath};
use crate::tenants::parse_tenant;

pub async fn reconcile_all(State(app): State<AppState>) -> Result<Json<usize>, ApiError> {
    Ok(Json(app.leader.get()?.reconcile_all().await?))
}

pub async fn consistency_check(State(app): State<AppState>) -> Result<Json<()>, ApiError> {
    Ok(Json(app.leader.get()?.consistency_check().await?))
}

pub async fn inspect(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<InspectRequest>,
) -> Result<Json<InspectResponse>, ApiError> {
    Ok(Json(app.leader.get_starting()?.inspect(req).await?))
}

pub async fn attach_hook(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<AttachHookRequest>,
) -> Result<Json<AttachHookResponse>, ApiError> {
    Ok(Json(app.leader.get()?.attach_hook(req).await?))
}

pub async fn tenants_dump(
    State(app): State<AppState>,
) -> Result<Json<Vec<storcon_api::wire::TenantShardDump>>, ApiError> {
    Ok(Json(app.leader.get()?.tenants_dump().await?))
}

pub async fn tenant_locate(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
) -> Result<Json<storcon_api::wire::TenantLocateResponse>, ApiError> {
    let tenant_id = parse_tenant(&raw)?;
    Ok(Json(app.leader.get()?.tenant_locate(tenant_id).await?))
}

pub async fn scheduler_dump(
    State(app): State<AppState>,
) -> Result<Json<storcon_api::wire::SchedulerDump>, ApiError> {
    Ok(Json(app.leader.get()?.scheduler_dump().await?))
}

pub async fn tenant_drop(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
) -> Result<Json<()>, ApiError> {
    let tenant_id = parse_tenant(&raw)?;
    Ok(Json(app.leader.get()?.tenant_drop(tenant_id).await?))
}

pub async fn node_drop(
    State(app): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<()>, ApiError> {
    Ok(Json(app.leader.get()?.node_drop(id).await?))
}
