//! Tenants: the pageserver-compatible `/v1/tenant` API and `/control/v1/tenant`.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | /v1/tenant | 201 `{"shards":[{"shard_id","node_id","generation"}]}`; idempotent; 409 other shard count; 400 sharded id |
//! | DELETE | /v1/tenant/{tenant_id} | detach everywhere, then delete; 200 `null`; 404 unknown |
//! | GET | /control/v1/tenant/{tenant_id} | `TenantDescribeResponse`; 404 |
//! | GET | /control/v1/tenant?limit=&start_after= | `[TenantDescribeResponse]` by tenant id |
//! | PUT | /control/v1/tenant/{tenant_id}/policy | `{"placement","scheduling"}`; 200 `null`; 404 |

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use state_machine::ids::TenantId;
use state_machine::wire::{
    TenantCreateRequest, TenantCreateResponse, TenantCreateResponseShard, TenantDescribeResponse,
    TenantDescribeResponseShard,
};
use state_machine::{
    Command, CreateTenant, DEFAULT_STRIPE_SIZE, PlacementPolicy, ShardSchedulingPolicy,
    State as Replicated,
};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::leader::LeaderServices;
use crate::propose::{propose, read_linearizable};

/// Upstream waits this long for the reconciles a tenant change started.
const RECONCILE_WAIT: Duration = Duration::from_secs(30);

pub(crate) fn parse_tenant(raw: &str) -> Result<TenantId, ApiError> {
    raw.parse()
        .map_err(|e: state_machine::ids::IdError| ApiError::BadRequest(e.to_string()))
}

pub async fn create(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<TenantCreateRequest>,
) -> Result<(StatusCode, Json<TenantCreateResponse>), ApiError> {
    let services = app.leader.get()?;
    if req.new_tenant_id.shard_count.0 != 0 {
        return Err(ApiError::BadRequest(format!(
            "new_tenant_id must be a tenant id, not the shard id {}",
            req.new_tenant_id
        )));
    }
    let tenant_id = req.new_tenant_id.tenant_id;
    let stripe_size = req
        .shard_parameters
        .stripe_size
        .unwrap_or(DEFAULT_STRIPE_SIZE);
    if stripe_size == 0 {
        return Err(ApiError::BadRequest("stripe_size must be positive".into()));
    }
    // Keep the AZ of an existing tenant so a retried create is idempotent.
    let existing_az = app
        .state
        .read()
        .tenant_shards(tenant_id)
        .next()
        .map(|s| s.preferred_az.clone());
    let preferred_az = match existing_az {
        Some(az) => az,
        None => services.choose_az(),
    };
    propose(
        &app,
        Command::CreateTenant(CreateTenant {
            tenant_id,
            shard_count: req.shard_parameters.count,
            stripe_size,
            placement: req.placement_policy.unwrap_or_default(),
            config: serde_json::Value::Object(req.config),
            preferred_az,
            generation: req.generation,
        }),
    )
    .await?;
    services.schedule_tenant(tenant_id).await?;
    if !services.wait_reconciled(tenant_id, RECONCILE_WAIT).await {
        tracing::warn!(%tenant_id, "tenant created; reconciles still running");
    }
    let shards = app
        .state
        .read()
        .tenant_shards(tenant_id)
        .filter_map(|s| {
            s.intent.attached.map(|node_id| TenantCreateResponseShard {
                shard_id: s.id,
                node_id,
                generation: s.generation.unwrap_or(0),
            })
        })
        .collect();
    Ok((StatusCode::CREATED, Json(TenantCreateResponse { shards })))
}

pub async fn delete(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
) -> Result<Json<()>, ApiError> {
    let tenant_id = parse_tenant(&raw)?;
    let services = app.leader.get()?;
    propose(
        &app,
        Command::SetTenantPolicy {
            tenant_id,
            placement: Some(PlacementPolicy::Detached),
            scheduling: None,
        },
    )
    .await?;
    services.schedule_tenant(tenant_id).await?;
    if !services.wait_reconciled(tenant_id, RECONCILE_WAIT).await {
        return Err(ApiError::Unavailable(format!(
            "tenant {tenant_id} is not detached everywhere yet; retry the delete"
        )));
    }
    propose(&app, Command::DeleteTenant { tenant_id }).await?;
    services.forget_tenant(tenant_id);
    Ok(Json(()))
}

fn describe_one(
    state: &Replicated,
    services: &dyn LeaderServices,
    tenant_id: TenantId,
) -> Option<TenantDescribeResponse> {
    let shards: Vec<_> = state.tenant_shards(tenant_id).collect();
    let first = shards.first()?;
    Some(TenantDescribeResponse {
        tenant_id,
        stripe_size: first.stripe_size,
        policy: first.placement,
        config: first.config.clone(),
        shards: shards
            .iter()
            .map(|s| {
                let status = services.shard_status(s.id);
                TenantDescribeResponseShard {
                    tenant_shard_id: s.id,
                    node_attached: s.intent.attached,
                    node_secondary: s.intent.secondaries.clone(),
                    last_error: status.last_error,
                    is_reconciling: status.is_reconciling,
                    is_pending_compute_notification: status.pending_compute_notification,
                    is_splitting: s.splitting,
                    is_importing: false,
                    scheduling_policy: s.scheduling,
                    preferred_az_id: s.preferred_az.clone(),
                }
            })
            .collect(),
    })
}

pub async fn describe(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
) -> Result<Json<TenantDescribeResponse>, ApiError> {
    let tenant_id = parse_tenant(&raw)?;
    let services = app.leader.get()?;
    read_linearizable(&app, |s| describe_one(s, services.as_ref(), tenant_id))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("Tenant {tenant_id} not found")))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    start_after: Option<String>,
}

pub async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<TenantDescribeResponse>>, ApiError> {
    let services = app.leader.get()?;
    let start_after = q.start_after.as_deref().map(parse_tenant).transpose()?;
    let limit = q.limit.unwrap_or(usize::MAX);
    let page = read_linearizable(&app, |s| {
        let ids: BTreeSet<TenantId> = s
            .shards()
            .map(|sh| sh.id.tenant_id)
            .filter(|t| start_after.is_none_or(|a| *t > a))
            .collect();
        ids.into_iter()
            .take(limit)
            .filter_map(|t| describe_one(s, services.as_ref(), t))
            .collect()
    })
    .await?;
    Ok(Json(page))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    #[serde(default)]
    placement: Option<PlacementPolicy>,
    #[serde(default)]
    scheduling: Option<ShardSchedulingPolicy>,
}

pub async fn set_policy(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
    ApiJson(req): ApiJson<PolicyRequest>,
) -> Result<Json<()>, ApiError> {
    let tenant_id = parse_tenant(&raw)?;
    let services = app.leader.get()?;
    propose(
        &app,
        Command::SetTenantPolicy {
            tenant_id,
            placement: req.placement,
            scheduling: req.scheduling,
        },
    )
    .await?;
    services.schedule_tenant(tenant_id).await?;
    Ok(Json(()))
}
