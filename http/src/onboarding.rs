//! `PUT /v1/tenant/{tenant_shard_id}/location_config`: the control plane hands a tenant to the
//! controller (onboarding) or changes its placement, speaking the pageserver's own API. The
//! workflow is the controller's `location_config` operation.

use axum::Json;
use axum::extract::State;
use state_machine::ids::TenantShardId;
use storcon_api::wire::{LocationConfig, LocationConfigResponse};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};

pub async fn put(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
    ApiJson(conf): ApiJson<LocationConfig>,
) -> Result<Json<LocationConfigResponse>, ApiError> {
    let id: TenantShardId = raw
        .parse()
        .map_err(|e: state_machine::ids::IdError| ApiError::BadRequest(e.to_string()))?;
    Ok(Json(app.leader.get()?.location_config(id, conf).await?))
}
