//! Test-only routes under `/debug/sim/`: read the history and state, switch split faults and
//! the behaviour knobs, set logical sizes. Not term-fenced: they are for tests and tools, not
//! for the controller.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::app::App;
use crate::error::{ApiError, parse_body};
use crate::ids::{parse_tenant, parse_timeline};
use crate::routes::{detached, json};
use crate::wire::{LogicalSizeRequest, LogicalSizeResponse, SimBehaviour, SplitBehaviour};

/// The history file as a JSON array, oldest first.
pub async fn history(State(app): State<Arc<App>>) -> Response {
    match app.history().await {
        Ok(lines) => json(StatusCode::OK, &lines),
        Err(e) => axum::response::IntoResponse::into_response(ApiError::from(e)),
    }
}

/// The whole persisted state (`locations.json` with `locations.journal` replayed on top).
pub async fn state(State(app): State<Arc<App>>) -> Response {
    json(StatusCode::OK, &app.snapshot().await)
}

pub async fn get_split_behaviour(State(app): State<Arc<App>>) -> Response {
    json(StatusCode::OK, &app.split_behaviour())
}

pub async fn set_split_behaviour(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match parse_body::<SplitBehaviour>(&body) {
        Ok(behaviour) => {
            tracing::info!("split behaviour now {behaviour:?}");
            app.set_split_behaviour(behaviour);
            json(StatusCode::OK, &behaviour)
        }
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

pub async fn get_behaviour(State(app): State<Arc<App>>) -> Response {
    json(StatusCode::OK, &app.behaviour())
}

pub async fn set_behaviour(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match parse_body::<SimBehaviour>(&body) {
        Ok(behaviour) => {
            tracing::info!("behaviour now {behaviour:?}");
            app.set_behaviour(behaviour);
            json(StatusCode::OK, &behaviour)
        }
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

/// `PUT /debug/sim/tenant/:tenant_id/logical_size`, body `{"bytes": N}` or
/// `{"timeline_id": "<id>", "bytes": N}` (unknown keys 400): sets the logical size of that
/// timeline, or of every timeline, on EVERY local location of the tenant (attached or
/// secondary, every shard count). The value is tenant-wide, as upstream's logical size is:
/// each shard holds the same number, and `top_tenants` divides it by the shard count for
/// `max_logical_size_per_shard`. Persisted like any change, uploaded with the timeline's index
/// by attached locations (so a later attachment elsewhere loads it) and inherited by split
/// children; recorded in the history as `logical_size`. Only this simulator's locations
/// change: call it on each simulator holding a shard of the tenant. 200
/// `{"shards": ["<tenant_shard_id>", ...]}` (the shards changed); 404 when no local location
/// of the tenant has such a timeline; 400 for a malformed id or body.
pub async fn set_logical_size(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    detached(async move {
        let tenant = parse_tenant(&tenant).map_err(ApiError::BadRequest)?;
        let request: LogicalSizeRequest = parse_body(&body)?;
        let timeline = request
            .timeline_id
            .as_deref()
            .map(parse_timeline)
            .transpose()
            .map_err(ApiError::BadRequest)?;
        let mut txn = app.begin(&HeaderMap::new(), "logical_size", None).await?;
        let mut next = txn.state().clone();
        let shards = next.set_logical_size(tenant, timeline.as_deref(), request.bytes)?;
        let events = shards
            .iter()
            .map(|id| {
                let mut event = txn.event("logical_size", Some(*id));
                event.timeline_id.clone_from(&timeline);
                event.reason = Some(format!("{} bytes", request.bytes));
                event
            })
            .collect();
        txn.commit(next, events).await?;
        Ok(json(StatusCode::OK, &LogicalSizeResponse { shards }))
    })
    .await
}
