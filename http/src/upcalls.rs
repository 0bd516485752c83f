//! `/upcall/v1`: calls from pageservers.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | /upcall/v1/re-attach | `{"tenants":[{"id","gen","mode","stripe_size"}]}`: AttachedSingle with a new generation for every shard whose generation was issued to the node, Secondary (gen null) for its secondary intents |
//! | POST | /upcall/v1/validate | `{"tenants":[{"id","valid"}]}` after a ReadIndex check; unknown shards omitted |

use axum::Json;
use axum::extract::State;
use storcon_api::wire::{ReAttachRequest, ReAttachResponse, ValidateRequest, ValidateResponse};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;

pub async fn re_attach(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<ReAttachRequest>,
) -> Result<Json<ReAttachResponse>, ApiError> {
    if let Some(register) = &req.register {
        crate::nodes::require_https_port(&app, register)?;
    }
    Ok(Json(app.leader.get()?.re_attach(req).await?))
}

/// Needs only the replicated state, so it is answered while the leader starts up too.
pub async fn validate(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<ValidateRequest>,
) -> Result<Json<ValidateResponse>, ApiError> {
    Ok(Json(app.leader.get_starting()?.validate(req).await?))
}
