//! Secondary locations: simulated layer download and its status.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::app::App;
use crate::routes::{detached, json, parse_tsid, query_u64};

/// 200 once every layer is "downloaded", 202 before; each call advances the download.
pub async fn download(
    State(app): State<Arc<App>>,
    Path(tsid): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    detached(async move {
        let id = parse_tsid(&tsid)?;
        let wait_ms = query_u64(query.as_deref(), "wait_ms")?.unwrap_or(0);
        let mut txn = app.begin(&headers, "secondary_download", Some(id)).await?;
        let mut next = txn.state().clone();
        let progress = next.advance_download(id, wait_ms, &crate::now())?;
        // Progress is state too (it survives restarts), but not a location change: no history.
        txn.commit(next, Vec::new()).await?;
        let status = if progress.is_complete() {
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
        let loc = txn.state().secondary(id)?;
        let progress = loc.progress.clone().unwrap_or_default();
        Ok(json(StatusCode::OK, &progress.to_wire()))
    })
    .await
}
