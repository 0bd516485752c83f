//! Tenant config, as the pageserver API has it.
//!
//! | method | path | answer |
//! |---|---|---|
//! | PUT | /v1/tenant/config | `{"tenant_id", ...fields}` replaces the config of every shard; 200 `null`; 404 |
//! | PATCH | /v1/tenant/config | `{"tenant_id", ...fields}`: `null` removes, a value sets, absent keeps; 200 `null`; 404 |
//! | GET | /v1/tenant/{tenant_id}/config | `{"tenant_specific_overrides", "effective_config"}`; 404 |
//!
//! The fields are upstream's typed `TenantConfig` (`storcon_api::tenant_config`): an unknown
//! key, a wrong type or a bad duration is a 400 naming the field, before anything is proposed.
//! A change reaches pageservers through the reconciler; the answer waits up to 5 s for it and
//! succeeds either way, as upstream does.

use axum::Json;
use axum::extract::State;
use storcon_api::wire::{TenantConfigPatchRequest, TenantConfigRequest, TenantConfigResponse};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::tenants::parse_tenant;

/// The body of `PUT /v1/tenant/config`.
pub type ConfigRequest = TenantConfigRequest;
/// The body of `PATCH /v1/tenant/config`.
pub type ConfigPatchRequest = TenantConfigPatchRequest;

pub async fn put(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<ConfigRequest>,
) -> Result<Json<()>, ApiError> {
    Ok(Json(app.leader.get()?.tenant_config_set(req).await?))
}

pub async fn patch(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<ConfigPatchRequest>,
) -> Result<Json<()>, ApiError> {
    Ok(Json(app.leader.get()?.tenant_config_patch(req).await?))
}

pub async fn get(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
) -> Result<Json<TenantConfigResponse>, ApiError> {
    let tenant_id = parse_tenant(&raw)?;
    Ok(Json(
        app.leader
            .get_starting()?
            .tenant_config_get(tenant_id)
            .await?,
    ))
}
