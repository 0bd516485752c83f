//! Secondary locations: the download of what the attached location's heatmap lists, and its
//! status.
//!
//! A download starts at the first call and runs at `download_ms_per_layer` whether or not a
//! caller waits; `wait_ms` only says how long this call waits for it. With no heatmap in remote
//! storage there is nothing to fetch: complete at once, with `heatmap_mtime: null` and no
//! layers (what a real secondary of a tenant without `heatmap_period` reports).
//!
//! With `secondary_downloads_paused` a download makes no progress (its clock stands still, see
//! `model::DownloadClock`): the call waits its whole `wait_ms` and answers 202 with what was
//! held, unless that was already everything.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::api_tenant::remote_error;
use crate::app::App;
use crate::error::ApiError;
use crate::ids::TenantShardId;
use crate::model::{Progress, layers_now, ms_until_complete};
use crate::routes::{detached, json, parse_tsid, query_u64};

/// 200 once every layer of the heatmap is held, 202 before.
pub async fn download(
    State(app): State<Arc<App>>,
    Path(tsid): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    detached(async move {
        let id = parse_tsid(&tsid)?;
        let wait_ms = query_u64(query.as_deref(), "wait_ms")?.unwrap_or(0);
        let behaviour = app.behaviour();
        let rate = behaviour.download_ms_per_layer;
        let (progress, started, base) = {
            let txn = app.begin(&headers, "secondary_download", Some(id)).await?;
            let progress =
                against_heatmap(&app, id, txn.state().secondary(id)?.progress.clone()).await?;
            let (started, base) = app.download_started(id, progress.layers_downloaded);
            (progress, started, base)
        };
        let remaining = if behaviour.secondary_downloads_paused && !progress.is_complete() {
            wait_ms
        } else {
            ms_until_complete(base, progress.layers_total, rate)
                .saturating_sub(app.download_elapsed_ms(started))
        };
        // Waits without the state lock: other requests go on meanwhile.
        tokio::time::sleep(Duration::from_millis(remaining.min(wait_ms))).await;

        let mut txn = app.begin(&headers, "secondary_download", Some(id)).await?;
        let mut progress = progress;
        progress.layers_downloaded = held_now(&app, base, progress.layers_total, started);
        let mut next = txn.state().clone();
        next.set_progress(id, progress.clone())?;
        let mut event = txn.event("secondary_download", Some(id));
        event.reason = Some(format!(
            "{} of {} layers",
            progress.layers_downloaded, progress.layers_total
        ));
        txn.commit(next, vec![event]).await?;
        let status = if progress.is_complete() {
            app.download_done(id);
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        Ok(json(status, &progress.to_wire()))
    })
    .await
}

pub async fn status(
    State(app): State<Arc<App>>,
    Path(tsid): Path<String>,
    headers: HeaderMap,
) -> Response {
    detached(async move {
        let id = parse_tsid(&tsid)?;
        let txn = app.begin(&headers, "secondary_status", Some(id)).await?;
        let mut progress =
            against_heatmap(&app, id, txn.state().secondary(id)?.progress.clone()).await?;
        if let Some((started, base)) = app.download_running(id) {
            progress.layers_downloaded = held_now(&app, base, progress.layers_total, started);
        }
        Ok(json(StatusCode::OK, &progress.to_wire()))
    })
    .await
}

/// The secondary's progress measured against the heatmap now in remote storage.
async fn against_heatmap(
    app: &App,
    id: TenantShardId,
    progress: Option<Progress>,
) -> Result<Progress, ApiError> {
    let mut progress = progress.unwrap_or_default();
    match app.remote.heatmap(id).await.map_err(remote_error)? {
        None => {
            progress.layers_total = 0;
            progress.heatmap_mtime = None;
        }
        Some(heatmap) => {
            progress.layers_total = heatmap.layers();
            progress.heatmap_mtime = Some(heatmap.uploaded_at);
        }
    }
    progress.layers_downloaded = progress.layers_downloaded.min(progress.layers_total);
    Ok(progress)
}

/// Layers a download that started at `started` (download clock) with `base` layers holds now.
fn held_now(app: &App, base: u64, total: u64, started: u64) -> u64 {
    let behaviour = app.behaviour();
    layers_now(
        base,
        total,
        app.download_elapsed_ms(started),
        behaviour.download_ms_per_layer,
        behaviour.secondary_downloads_paused,
    )
}
