//! Moving one shard by hand.
//!
//! | method | path | answer |
//! |---|---|---|
//! | PUT | /control/v1/tenant/{tenant_shard_id}/migrate | `TenantShardMigrateRequest`; 200 `{}` after ≤30 s for its reconcile (a prewarm's warm-up and cut-over go on in the background); 400 unknown node or nothing to migrate; 404 shard; 412 node unavailable, worse-scoring (unless `override_scheduler`) or `origin_node_id` mismatch |
//! | PUT | /control/v1/tenant/{tenant_shard_id}/migrate?dry_run=true | 200 `DryRunResponse`: the move after the same checks (none when already there); nothing changed |
//! | PUT | /control/v1/tenant/{tenant_shard_id}/migrate_secondary | same body; the shard's secondaries become `[node_id]`; 200 `{}` |
//! | PUT | /control/v1/tenant/{tenant_shard_id}/cancel_reconcile | ends a migration that has not cut over; 200 `null` |
//! | PUT | /control/v1/preferred_azs | `{"<tenant_shard_id>": "az" \| null, ...}`; 200 `{"updated": [...]}` (the optimiser moves attachments there); 404 unknown shard, 400 AZ without a node, nothing changed |

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use state_machine::ids::TenantShardId;
use storcon_api::dry_run::DryRunQuery;
use storcon_api::migrate::{
    ShardsPreferredAzsRequest, ShardsPreferredAzsResponse, TenantShardMigrateRequest,
    TenantShardMigrateResponse,
};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::tenants::parse_id;

pub async fn migrate(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
    ApiQuery(q): ApiQuery<DryRunQuery>,
    ApiJson(req): ApiJson<TenantShardMigrateRequest>,
) -> Result<Response, ApiError> {
    let shard = parse_id::<TenantShardId>(&raw)?;
    let ops = app.leader.get()?;
    if q.dry_run {
        let preview = ops.tenant_shard_migrate_preview(shard, req).await?;
        return Ok(Json(preview).into_response());
    }
    Ok(Json(ops.tenant_shard_migrate(shard, req).await?).into_response())
}

pub async fn migrate_secondary(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
    ApiJson(req): ApiJson<TenantShardMigrateRequest>,
) -> Result<Json<TenantShardMigrateResponse>, ApiError> {
    let shard = parse_id::<TenantShardId>(&raw)?;
    Ok(Json(
        app.leader
            .get()?
            .tenant_shard_migrate_secondary(shard, req)
            .await?,
    ))
}

pub async fn cancel_reconcile(
    State(app): State<AppState>,
    ApiPath(raw): ApiPath,
) -> Result<Json<()>, ApiError> {
    let shard = parse_id::<TenantShardId>(&raw)?;
    app.leader
        .get()?
        .tenant_shard_cancel_reconcile(shard)
        .await?;
    Ok(Json(()))
}

pub async fn preferred_azs(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<ShardsPreferredAzsRequest>,
) -> Result<Json<ShardsPreferredAzsResponse>, ApiError> {
    Ok(Json(app.leader.get()?.preferred_azs(req).await?))
}
