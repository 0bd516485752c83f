//! Secondary warm-up and remote-storage time travel, both relayed to pageservers.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | /v1/tenant/{tenant_shard_id}/secondary/download[?wait_ms] | 200 complete / 202 in progress, summed `SecondaryProgress`; 404 no secondaries |
//! | PUT | /v1/tenant/{tenant_id}/time_travel_remote_storage?travel_to&done_if_after | `{"shard_counts"}`; 200 `null`; 409 unless detached |

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use state_machine::ids::TenantShardId;
use storcon_api::secondary::{
    DownloadStatus, SecondaryDownloadQuery, SecondaryProgress, TimeTravelQuery, TimeTravelRequest,
};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::tenants::{parse_id, parse_tenant};

pub async fn download(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
    ApiQuery(q): ApiQuery<SecondaryDownloadQuery>,
) -> Result<(StatusCode, Json<SecondaryProgress>), ApiError> {
    let shard = parse_id::<TenantShardId>(&raw)?;
    let (status, progress) = app
        .leader
        .get()?
        .secondary_download(shard, q.wait_ms)
        .await?;
    let status = match status {
        DownloadStatus::Complete => StatusCode::OK,
        DownloadStatus::InProgress => StatusCode::ACCEPTED,
    };
    Ok((status, Json(progress)))
}

pub async fn time_travel(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
    ApiQuery(q): ApiQuery<TimeTravelQuery>,
    ApiJson(req): ApiJson<TimeTravelRequest>,
) -> Result<Json<()>, ApiError> {
    let tenant = parse_tenant(&raw)?;
    q.check().map_err(ApiError::BadRequest)?;
    app.leader.get()?.time_travel(tenant, q, req).await?;
    Ok(Json(()))
}
