//! `PUT /v1/tenant/{tenant_shard_id}/location_config`: the control plane hands a tenant to the
//! controller (onboarding) or changes its placement, speaking the pageserver's own API. The
//! workflow is the controller's `location_config` operation.
//!
//! The body is upstream's `TenantLocationConfigRequest`: unknown keys are refused and
//! `tenant_conf` is required and typed (a bad field is a 400 naming it), so the same onboarding
//! request can be repeated.

use axum::Json;
use axum::extract::State;
use state_machine::ids::TenantShardId;
use storcon_api::wire::{LocationConfigResponse, TenantLocationConfigRequest};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};

pub async fn put(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
    ApiJson(conf): ApiJson<TenantLocationConfigRequest>,
) -> Result<Json<LocationConfigResponse>, ApiError> {
    let id: TenantShardId = raw
        .parse()
        .map_err(|e: state_machine::ids::IdError| ApiError::BadRequest(e.to_string()))?;
    Ok(Json(
        app.leader.get()?.location_config(id, conf.into()).await?,
    ))
}
