//! `PUT /control/v1/tenant/:tenant_id/shard_split`: the leader's split driver does the work.

use axum::Json;
use axum::extract::State;
use state_machine::wire::{TenantShardSplitRequest, TenantShardSplitResponse};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::tenants::parse_tenant;

pub async fn split(
    State(app): State<AppState>,
    ApiPath(tenant_id): ApiPath,
    ApiJson(req): ApiJson<TenantShardSplitRequest>,
) -> Result<Json<TenantShardSplitResponse>, ApiError> {
    let tenant_id = parse_tenant(&tenant_id)?;
    let services = app.leader.get()?;
    let new_shards = services
        .split_tenant(tenant_id, req.new_shard_count, req.new_stripe_size)
        .await?;
    Ok(Json(TenantShardSplitResponse { new_shards }))
}
