//! `/debug/v1`: operator and test hooks.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | /debug/v1/reconcile_all | how many shards were queued |
//! | POST | /debug/v1/consistency_check | 200 `null`, or 500 listing what disagrees |
//! | POST | /debug/v1/inspect | `{"attachment": [generation, node_id] \| null}` |
//! | POST | /debug/v1/attach-hook | `{"gen"}`: attach a shard (created if missing) in a new generation, or detach it |

use axum::Json;
use axum::extract::State;
use storcon_api::wire::{AttachHookRequest, AttachHookResponse, InspectRequest, InspectResponse};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;

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
