//! `PUT /v1/tenant/{tenant_shard_id}/location_config`: the control plane hands a tenant to the
//! controller (onboarding) or changes its placement, speaking the pageserver's own API.
//!
//! - mode Detached -> policy Detached; Secondary -> Secondary; Attached* -> Attached(1), or
//!   Attached(0) when only one pageserver is registered.
//! - An unknown tenant is created; for an attached mode the request's generation becomes the
//!   tenant's, so the controller continues the control plane's generation sequence. A known
//!   tenant's policy, config and generation change in one command (`OnboardTenant`).
//! - `tenant_conf` must be an object (absent means the default config); anything else is a 400
//!   and changes nothing.
//! - Answer: `{"shards":[{"shard_id","node_id"}],"stripe_size"}` for attached shards, after
//!   waiting up to 5 s for the reconcile (a slow reconcile is not an error).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use state_machine::ids::TenantShardId;
use state_machine::wire::{LocationConfig, LocationConfigMode};
use state_machine::{Command, CreateTenant, DEFAULT_STRIPE_SIZE, NodeId, PlacementPolicy};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::propose::propose;

const ONBOARD_RECONCILE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize)]
pub struct LocationConfigResponseShard {
    shard_id: TenantShardId,
    node_id: NodeId,
}

#[derive(Debug, Serialize)]
pub struct LocationConfigResponse {
    shards: Vec<LocationConfigResponseShard>,
    stripe_size: Option<u32>,
}

pub async fn put(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
    ApiJson(conf): ApiJson<LocationConfig>,
) -> Result<Json<LocationConfigResponse>, ApiError> {
    let id: TenantShardId = raw
        .parse()
        .map_err(|e: state_machine::ids::IdError| ApiError::BadRequest(e.to_string()))?;
    if id.shard_count.count() > 1 {
        return Err(ApiError::BadRequest(format!(
            "{id}: location_config is only accepted for unsharded tenants; use the tenant APIs"
        )));
    }
    if conf.mode.is_attached() && conf.generation.is_none() {
        return Err(ApiError::BadRequest(
            "an attached mode needs a generation".into(),
        ));
    }
    let services = app.leader.get()?;
    let tenant_id = id.tenant_id;
    let placement = match conf.mode {
        LocationConfigMode::Detached => PlacementPolicy::Detached,
        LocationConfigMode::Secondary => PlacementPolicy::Secondary,
        _ if app.state.read().nodes().count() > 1 => PlacementPolicy::Attached(1),
        _ => PlacementPolicy::Attached(0),
    };
    // An absent `tenant_conf` is the default config, as on a pageserver.
    let config = match conf.tenant_conf {
        serde_json::Value::Null => serde_json::json!({}),
        c => c,
    };
    let generation = conf.generation.filter(|_| conf.mode.is_attached());
    let known = app.state.read().tenant_shards(tenant_id).next().is_some();
    let command = if known {
        // One command: a refused config must not leave the new policy behind.
        Command::OnboardTenant {
            tenant_id,
            placement,
            config,
            generation,
        }
    } else {
        Command::CreateTenant(CreateTenant {
            tenant_id,
            shard_count: id.shard_count.0,
            stripe_size: DEFAULT_STRIPE_SIZE,
            placement,
            config,
            preferred_az: services.choose_az(),
            generation,
        })
    };
    propose(&app, command).await?;
    services.schedule_tenant(tenant_id).await?;
    if !services
        .wait_reconciled(tenant_id, ONBOARD_RECONCILE_WAIT)
        .await
    {
        tracing::info!(%tenant_id, "location_config stored; reconcile still running");
    }
    let state = app.state.read();
    let shards: Vec<_> = state.tenant_shards(tenant_id).collect();
    Ok(Json(LocationConfigResponse {
        stripe_size: shards
            .first()
            .filter(|s| s.id.shard_count.count() > 1)
            .map(|s| s.stripe_size),
        shards: shards
            .iter()
            .filter_map(|s| {
                s.intent
                    .attached
                    .map(|node_id| LocationConfigResponseShard {
                        shard_id: s.id,
                        node_id,
                    })
            })
            .collect(),
    }))
}
