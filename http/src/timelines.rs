//! Timelines and the tenant passthroughs: the control plane's calls that reach pageservers.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | /v1/tenant/{tenant_id}/timeline | 201 shard zero's `TimelineInfo` + `safekeepers`; idempotent |
//! | DELETE | /v1/tenant/{tenant_id}/timeline/{timeline_id} | 200 `null` when gone; 409 still deleting; 503 |
//! | GET | /control/v1/tenant/{tenant_id}/timeline/{timeline_id} | `{"shards":[TimelineInfo],"image_consistent_lsn"}` |
//! | PUT | .../timeline/{timeline_id}/archival_config | `{"state"}` on every shard; 200 `null` |
//! | PUT | .../timeline/{timeline_id}/detach_ancestor[?detach_behavior] | every shard; `{"reparented_timelines"}` |
//! | POST | .../timeline/{timeline_id}/block_gc, unblock_gc | every shard; 200 `null` |
//! | POST | .../timeline/{timeline_id}/lsn_lease | `{"lsn"}` on every shard; the earliest `{"valid_until"}` |
//! | PUT | .../timeline/{timeline_id}/mark_invisible | shard zero; 200 `null` |
//! | POST | /v1/tenant/{tenant_shard_id}/timeline/{timeline_id}/download_heatmap_layers | the shard, or all |
//! | GET | /v1/tenant/{tenant_shard_id}[/...] | relayed to shard zero's (or the shard's) pageserver |
//!
//! Pageserver errors keep their status. A handler parses, makes one call and maps the error.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use state_machine::ids::{TenantShardId, TimelineId};
use storcon_api::timeline::{
    DetachBehavior, DownloadHeatmapLayersQuery, LsnLeaseRequest, TenantTimelineDescribeResponse,
    TimelineArchivalConfigRequest, TimelineCall, TimelineCreateRequest, TimelineCreateResponse,
};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiPathPair, ApiQuery};
use crate::tenants::{parse_id, parse_tenant};

pub async fn create(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
    ApiJson(req): ApiJson<TimelineCreateRequest>,
) -> Result<(StatusCode, Json<TimelineCreateResponse>), ApiError> {
    let tenant = parse_tenant(&raw)?;
    let created = app.leader.get()?.timeline_create(tenant, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn delete(
    State(app): State<AppState>,
    ApiPathPair(tenant, timeline): ApiPathPair,
) -> Result<Json<()>, ApiError> {
    let (tenant, timeline) = (parse_tenant(&tenant)?, parse_id::<TimelineId>(&timeline)?);
    app.leader.get()?.timeline_delete(tenant, timeline).await?;
    Ok(Json(()))
}

pub async fn describe(
    State(app): State<AppState>,
    ApiPathPair(tenant, timeline): ApiPathPair,
) -> Result<Json<TenantTimelineDescribeResponse>, ApiError> {
    let (tenant, timeline) = (parse_tenant(&tenant)?, parse_id::<TimelineId>(&timeline)?);
    let described = app
        .leader
        .get()?
        .timeline_describe(tenant, timeline)
        .await?;
    Ok(Json(described))
}

async fn call(
    app: &AppState,
    (shard, timeline): (String, String),
    call: TimelineCall,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (shard, timeline) = (
        parse_id::<TenantShardId>(&shard)?,
        parse_id::<TimelineId>(&timeline)?,
    );
    Ok(Json(
        app.leader
            .get()?
            .timeline_call(shard, timeline, call)
            .await?,
    ))
}

pub async fn archival_config(
    State(app): State<AppState>,
    ApiPathPair(t, tl): ApiPathPair,
    ApiJson(req): ApiJson<TimelineArchivalConfigRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    call(&app, (t, tl), TimelineCall::ArchivalConfig(req)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetachQuery {
    detach_behavior: Option<DetachBehavior>,
}

pub async fn detach_ancestor(
    State(app): State<AppState>,
    ApiPathPair(t, tl): ApiPathPair,
    ApiQuery(q): ApiQuery<DetachQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    call(
        &app,
        (t, tl),
        TimelineCall::DetachAncestor(q.detach_behavior),
    )
    .await
}

pub async fn block_gc(
    State(app): State<AppState>,
    ApiPathPair(t, tl): ApiPathPair,
) -> Result<Json<serde_json::Value>, ApiError> {
    call(&app, (t, tl), TimelineCall::BlockGc).await
}

pub async fn unblock_gc(
    State(app): State<AppState>,
    ApiPathPair(t, tl): ApiPathPair,
) -> Result<Json<serde_json::Value>, ApiError> {
    call(&app, (t, tl), TimelineCall::UnblockGc).await
}

pub async fn lsn_lease(
    State(app): State<AppState>,
    ApiPathPair(t, tl): ApiPathPair,
    ApiJson(req): ApiJson<LsnLeaseRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    call(&app, (t, tl), TimelineCall::LsnLease(req)).await
}

/// The body is optional (upstream's is a small object the pageserver interprets).
pub async fn mark_invisible(
    State(app): State<AppState>,
    ApiPathPair(t, tl): ApiPathPair,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            crate::strict_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        )
    };
    call(&app, (t, tl), TimelineCall::MarkInvisible(body)).await
}

pub async fn download_heatmap_layers(
    State(app): State<AppState>,
    ApiPathPair(t, tl): ApiPathPair,
    ApiQuery(q): ApiQuery<DownloadHeatmapLayersQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    call(&app, (t, tl), TimelineCall::DownloadHeatmapLayers(q)).await
}

/// `GET /v1/tenant/{tenant_shard_id}` and everything under it that the controller does not
/// serve itself: the pageserver's answer, status and body, as it came.
pub async fn tenant_get(
    State(app): State<AppState>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let tail = uri
        .path()
        .strip_prefix("/v1/tenant/")
        .ok_or_else(|| ApiError::NotFound("no such route".into()))?;
    let (id, rest) = match tail.find('/') {
        Some(at) => tail.split_at(at),
        None => (tail, ""),
    };
    let shard = parse_id::<TenantShardId>(id)?;
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let relayed = app
        .leader
        .get()?
        .tenant_get(shard, format!("{rest}{query}"))
        .await?;
    let status = StatusCode::from_u16(relayed.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, relayed.body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
