//! The HTTP router and the helpers every handler shares.

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Serialize;

use crate::app::App;
use crate::error::ApiError;
use crate::ids::TenantShardId;
use crate::{api_debug, api_location, api_secondary, api_tenant, api_timeline, api_timeline_ops};

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/utilization", get(api_location::utilization))
        .route("/v1/top_tenants", post(api_location::top_tenants))
        .route("/v1/location_config", get(api_location::list))
        .route("/v1/location_config/{tsid}", get(api_location::get_one))
        .route(
            "/v1/tenant/{tsid}/location_config",
            put(api_location::configure),
        )
        .route(
            "/v1/tenant/{tsid}/heatmap_upload",
            post(api_location::heatmap_upload),
        )
        .route(
            "/v1/tenant/{tsid}/secondary/download",
            post(api_secondary::download),
        )
        .route(
            "/v1/tenant/{tsid}/secondary/status",
            get(api_secondary::status),
        )
        .route(
            "/v1/tenant/{tsid}/timeline",
            post(api_timeline::create).get(api_timeline::list),
        )
        .route(
            "/v1/tenant/{tsid}/timeline/{timeline}",
            get(api_timeline::detail).delete(api_timeline::delete),
        )
        .route(
            "/v1/tenant/{tsid}/timeline/{timeline}/archival_config",
            put(api_timeline_ops::archival_config),
        )
        .route(
            "/v1/tenant/{tsid}/timeline/{timeline}/block_gc",
            post(api_timeline_ops::block_gc),
        )
        .route(
            "/v1/tenant/{tsid}/timeline/{timeline}/unblock_gc",
            post(api_timeline_ops::unblock_gc),
        )
        .route(
            "/v1/tenant/{tsid}/timeline/{timeline}/lsn_lease",
            post(api_timeline_ops::lsn_lease),
        )
        .route(
            "/v1/tenant/{tsid}/timeline/{timeline}/mark_invisible",
            put(api_timeline_ops::mark_invisible),
        )
        .route(
            "/v1/tenant/{tsid}/timeline/{timeline}/detach_ancestor",
            put(api_timeline_ops::detach_ancestor),
        )
        .route(
            "/v1/tenant/{tsid}/timeline/{timeline}/download_heatmap_layers",
            post(api_timeline_ops::download_heatmap_layers),
        )
        .route(
            "/v1/tenant/{tsid}/time_travel_remote_storage",
            put(api_timeline_ops::time_travel),
        )
        .route("/v1/tenant/{tsid}/wait_lsn", post(api_timeline::wait_lsn))
        .route(
            "/v1/tenant/{tsid}",
            get(api_tenant::get).delete(api_tenant::delete),
        )
        .route("/v1/tenant/{tsid}/shard_split", put(api_tenant::split))
        .route("/debug/sim/history", get(api_debug::history))
        .route("/debug/sim/state", get(api_debug::state))
        .route(
            "/debug/sim/behaviour",
            get(api_debug::get_behaviour).put(api_debug::set_behaviour),
        )
        .route(
            "/debug/sim/tenant/{tenant_id}/logical_size",
            put(api_debug::set_logical_size),
        )
        .route(
            "/debug/sim/split_behaviour",
            get(api_debug::get_split_behaviour).put(api_debug::set_split_behaviour),
        )
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(app)
}

/// Runs a handler body in its own task: if the caller hangs up mid-request, the change still
/// completes (persist, record, publish) instead of being cancelled between those steps.
pub async fn detached<F>(body: F) -> Response
where
    F: Future<Output = Result<Response, ApiError>> + Send + 'static,
{
    match tokio::spawn(body).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::Internal(format!("request task failed: {e}")).into_response(),
    }
}

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    (status, Json(body)).into_response()
}

pub fn parse_tsid(s: &str) -> Result<TenantShardId, ApiError> {
    s.parse().map_err(ApiError::BadRequest)
}

/// One query parameter's raw value (no percent-decoding: the values the controller sends
/// need none, and an encoded one is refused by the parser that reads it).
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| v.to_owned())
    })
}

/// One numeric query parameter; other parameters (`lazy`, `flush_ms`, ...) are ignored.
pub fn query_u64(query: Option<&str>, key: &str) -> Result<Option<u64>, ApiError> {
    query_param(query, key)
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::BadRequest(format!("query parameter {key}={v:?} is not a number"))
            })
        })
        .transpose()
}
