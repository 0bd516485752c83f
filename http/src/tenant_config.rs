//! Tenant config, as the pageserver API has it.
//!
//! | method | path | answer |
//! |---|---|---|
//! | PUT | /v1/tenant/config | `{"tenant_id", ...fields}` replaces the config of every shard; 200 `null`; 404 |
//! | PATCH | /v1/tenant/config | `{"tenant_id", ...fields}`: `null` removes, a value sets, absent keeps; 200 `null`; 404 |
//! | GET | /v1/tenant/{tenant_id}/config | `{"tenant_specific_overrides", "effective_config"}`; 404 |
//!
//! A change reaches pageservers through the reconciler; the answer waits up to 5 s for it and
//! succeeds either way, as upstream does.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value};
use state_machine::Command;
use state_machine::ids::TenantId;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::propose::{propose, read_linearizable};
use crate::tenants::parse_tenant;

const CONFIG_RECONCILE_WAIT: Duration = Duration::from_secs(5);

/// The body of `PUT`/`PATCH /v1/tenant/config`.
#[derive(Debug, Deserialize)]
pub struct ConfigRequest {
    pub tenant_id: TenantId,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

async fn apply(
    app: &AppState,
    tenant_id: TenantId,
    command: Command,
) -> Result<Json<()>, ApiError> {
    let services = app.leader.get()?;
    propose(app, command).await?;
    services.schedule_tenant(tenant_id).await?;
    if !services
        .wait_reconciled(tenant_id, CONFIG_RECONCILE_WAIT)
        .await
    {
        tracing::info!(%tenant_id, "config stored; pageservers not all updated yet");
    }
    Ok(Json(()))
}

pub async fn put(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<ConfigRequest>,
) -> Result<Json<()>, ApiError> {
    let command = Command::SetTenantConfig {
        tenant_id: req.tenant_id,
        config: Value::Object(req.fields),
    };
    apply(&app, req.tenant_id, command).await
}

pub async fn patch(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<ConfigRequest>,
) -> Result<Json<()>, ApiError> {
    let command = Command::PatchTenantConfig {
        tenant_id: req.tenant_id,
        patch: req.fields,
    };
    apply(&app, req.tenant_id, command).await
}

pub async fn get(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
) -> Result<Json<Value>, ApiError> {
    let tenant_id = parse_tenant(&raw)?;
    let config = read_linearizable(&app, |s| {
        s.tenant_shards(tenant_id).next().map(|s| s.config.clone())
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("Tenant {tenant_id} not found")))?;
    Ok(Json(serde_json::json!({
        "tenant_specific_overrides": config,
        "effective_config": config,
    })))
}
