//! Locations: `location_config` (set, list, get), utilization, top tenants and heatmap upload.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::api_tenant::remote_error;
use crate::app::App;
use crate::error::{ApiError, parse_body};
use crate::model::SimState;
use crate::remote::{Upload, heatmap_of};
use crate::routes::{detached, json, parse_tsid};
use crate::wire::{
    LocationConfig, LocationConfigList, LocationConfigResponse, Mode, PageserverUtilization,
    TenantShardLocation,
};
use crate::wire::{TopTenantShardsRequest, TopTenantShardsResponse};

/// Simulated disk: plenty free, so the shard count drives the utilization score.
const FREE_SPACE_BYTES: u64 = 100 << 30;
const MAX_SHARD_COUNT: u32 = 20_000;

pub async fn configure(
    State(app): State<Arc<App>>,
    Path(tsid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    detached(async move {
        let id = parse_tsid(&tsid)?;
        let mut txn = app.begin(&headers, "location_config", Some(id)).await?;
        let conf: LocationConfig = parse_body(&body)?;
        let mut event = txn.event("location_config", Some(id));
        event.mode = Some(conf.mode);
        event.generation = conf.generation;
        let mut next = txn.state().clone();
        let outcome = if conf.mode == Mode::Detached {
            // Detaching an attachment that holds data deletes it: only after validation.
            let validated = match next.deletion_to_validate(id) {
                Some(shard) => txn.validate(&[shard]).await?.get(&id).copied().flatten(),
                None => None,
            };
            if !next.remove(id, validated, "detach") {
                event.reason = Some("was not present".into());
            }
            Ok(())
        } else {
            let new_generation = conf.mode.is_attached()
                && next.locations.get(&id).and_then(|l| l.generation) != conf.generation;
            if new_generation {
                app.note_attached(id);
            }
            let remote = if conf.mode.is_attached() {
                app.remote.timelines(id).await.map_err(remote_error)?
            } else {
                Default::default()
            };
            next.configure(id, &conf, &crate::now(), remote)
        };
        txn.conclude(next, vec![event], outcome).await?;
        tracing::info!("{id}: {:?} generation {:?}", conf.mode, conf.generation);
        let response = LocationConfigResponse {
            shards: vec![TenantShardLocation {
                shard_id: id,
                node_id: app.node_id,
            }],
            stripe_size: Some(conf.shard_stripe_size),
        };
        Ok(json(StatusCode::OK, &response))
    })
    .await
}

pub async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    detached(async move {
        let txn = app.begin(&headers, "list_location_config", None).await?;
        let tenant_shards = txn
            .state()
            .locations
            .iter()
            .map(|(id, loc)| (*id, Some(loc.to_wire(*id))))
            .collect();
        Ok(json(StatusCode::OK, &LocationConfigList { tenant_shards }))
    })
    .await
}

pub async fn get_one(
    State(app): State<Arc<App>>,
    Path(tsid): Path<String>,
    headers: HeaderMap,
) -> Response {
    detached(async move {
        let id = parse_tsid(&tsid)?;
        let txn = app.begin(&headers, "get_location_config", Some(id)).await?;
        let loc = txn
            .state()
            .locations
            .get(&id)
            .ok_or_else(|| ApiError::NotFound(format!("tenant shard {id} not found")))?;
        Ok(json(StatusCode::OK, &loc.to_wire(id)))
    })
    .await
}

pub async fn utilization(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    detached(async move {
        let txn = app.begin(&headers, "utilization", None).await?;
        Ok(json(StatusCode::OK, &utilization_of(txn.state())))
    })
    .await
}

/// `POST /v1/top_tenants`, body `{"order_by": "resident_size" | "max_logical_size" |
/// "max_logical_size_per_shard", "limit": n, "where_shards_lt": n | null, "where_gt": bytes |
/// null}` (unknown keys 400): `{"shards": [{"id", "resident_size", "physical_size",
/// "max_logical_size", "max_logical_size_per_shard"}]}` with upstream's semantics (see
/// `SimState::top_tenants`).
pub async fn top_tenants(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    detached(async move {
        let txn = app.begin(&headers, "top_tenants", None).await?;
        let request: TopTenantShardsRequest = parse_body(&body)?;
        let shards = txn.state().top_tenants(&request);
        Ok(json(StatusCode::OK, &TopTenantShardsResponse { shards }))
    })
    .await
}

pub async fn heatmap_upload(
    State(app): State<Arc<App>>,
    Path(tsid): Path<String>,
    headers: HeaderMap,
) -> Response {
    detached(async move {
        let id = parse_tsid(&tsid)?;
        let mut txn = app.begin(&headers, "heatmap_upload", Some(id)).await?;
        let loc = txn.state().attached(id)?;
        // Asked for explicitly: uploaded whatever the configured period.
        let upload = heatmap_of(loc, &crate::now()).map(|h| Upload::Heatmap(id, h));
        let mut event = txn.event("heatmap_upload", Some(id));
        event.generation = loc.generation;
        txn.upload(upload.into_iter().collect()).await?;
        let next = txn.state().clone();
        txn.commit(next, vec![event]).await?;
        Ok(json(StatusCode::OK, &()))
    })
    .await
}

/// The reference's score: the worse of disk fullness and shard-count fullness, 1e6 = full.
/// The disk part counts layers only (`layer_usage_bytes`), so the logical sizes tests set do
/// not change scheduling; `disk_usage_bytes` reports them too.
fn utilization_of(state: &SimState) -> PageserverUtilization {
    let usage = state.layer_usage_bytes();
    let reported = state.disk_usage_bytes();
    let shard_count = u32::try_from(state.locations.len()).unwrap_or(u32::MAX);
    let usable_pct = 100u8;
    let capacity = u128::from(usage + FREE_SPACE_BYTES) * u128::from(usable_pct) / 100;
    let disk_score = u128::from(usage) * 1_000_000 / capacity.max(1);
    let shard_score = u128::from(shard_count) * 1_000_000 / u128::from(MAX_SHARD_COUNT);
    let score = u64::try_from(disk_score.max(shard_score)).unwrap_or(u64::MAX);
    PageserverUtilization {
        disk_usage_bytes: reported,
        free_space_bytes: FREE_SPACE_BYTES,
        disk_wanted_bytes: reported,
        disk_usable_pct: usable_pct,
        shard_count,
        max_shard_count: MAX_SHARD_COUNT,
        utilization_score: Some(score),
        captured_at: crate::now(),
    }
}
