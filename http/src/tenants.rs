//! Tenants: the pageserver-compatible `/v1/tenant` API and `/control/v1/tenant`.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | /v1/tenant | 201 `{"shards":[{"shard_id","node_id","generation"}]}`; idempotent; 409 other shard count; 400 sharded id |
//! | DELETE | /v1/tenant/{tenant_id} | delete on pageservers, detach, forget; 200 `null`; 202 while running; 404 unknown |
//! | GET | /control/v1/tenant/{tenant_id} | `TenantDescribeResponse`; 404 |
//! | GET | /control/v1/tenant?limit=&start_after= | `[TenantDescribeResponse]` by tenant id |
//! | PUT | /control/v1/tenant/{tenant_id}/policy | `{"placement","scheduling"}`; 200 `null`; 404 |
//! | PUT | /control/v1/tenant/{tenant_id}/shard_split | `{"new_shard_count","new_stripe_size"}` -> `{"new_shards"}` |
//! | PUT | /control/v1/tenant/{tenant_id}/shard_split?dry_run=true | 200 `DryRunResponse`: the children and their nodes after the same checks; nothing changed |

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use state_machine::ids::TenantId;
use storcon_api::dry_run::DryRunQuery;
use storcon_api::wire::{
    TenantCreateRequest, TenantCreateResponse, TenantDescribeResponse, TenantPolicyRequest,
    TenantShardSplitRequest, TenantShardSplitResponse,
};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::operations::{TenantDeletion, TenantPage};

pub(crate) fn parse_tenant(raw: &str) -> Result<TenantId, ApiError> {
    parse_id(raw)
}

/// Any id from a path segment (tenant, shard, timeline); a malformed one is a 400.
pub(crate) fn parse_id<T>(raw: &str) -> Result<T, ApiError>
where
    T: std::str::FromStr<Err = state_machine::ids::IdError>,
{
    raw.parse()
        .map_err(|e: state_machine::ids::IdError| ApiError::BadRequest(e.to_string()))
}

pub async fn create(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<TenantCreateRequest>,
) -> Result<(StatusCode, Json<TenantCreateResponse>), ApiError> {
    let created = app.leader.get()?.tenant_create(req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn delete(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
) -> Result<(StatusCode, Json<()>), ApiError> {
    let tenant_id = parse_tenant(&raw)?;
    let status = match app.leader.get()?.tenant_delete(tenant_id).await? {
        TenantDeletion::Done => StatusCode::OK,
        TenantDeletion::InProgress => StatusCode::ACCEPTED,
    };
    Ok((status, Json(())))
}

pub async fn describe(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
) -> Result<Json<TenantDescribeResponse>, ApiError> {
    let tenant_id = parse_tenant(&raw)?;
    Ok(Json(app.leader.get()?.tenant_describe(tenant_id).await?))
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
    let page = TenantPage {
        start_after: q.start_after.as_deref().map(parse_tenant).transpose()?,
        limit: q.limit,
    };
    Ok(Json(app.leader.get()?.tenant_list(page).await?))
}

pub async fn set_policy(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
    ApiJson(req): ApiJson<TenantPolicyRequest>,
) -> Result<Json<()>, ApiError> {
    let tenant_id = parse_tenant(&raw)?;
    Ok(Json(app.leader.get()?.tenant_policy(tenant_id, req).await?))
}

pub async fn split(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
    ApiQuery(q): ApiQuery<DryRunQuery>,
    ApiJson(req): ApiJson<TenantShardSplitRequest>,
) -> Result<Response, ApiError> {
    let tenant_id = parse_tenant(&raw)?;
    let ops = app.leader.get()?;
    if q.dry_run {
        let preview = ops.tenant_split_preview(tenant_id, req).await?;
        return Ok(Json(preview).into_response());
    }
    let split: TenantShardSplitResponse = ops.tenant_split(tenant_id, req).await?;
    Ok(Json(split).into_response())
}
