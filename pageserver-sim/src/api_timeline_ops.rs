//! The timeline calls a controller passes through (archival, GC blocks, LSN leases,
//! visibility, ancestor detach, heatmap layer download) and the tenant's time travel. Each is
//! recorded in the history with its timeline and what it asked for.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::app::App;
use crate::error::{ApiError, parse_body};
use crate::ids::parse_timeline;
use crate::model::Timeline;
use crate::routes::{detached, json, parse_tsid, query_param};
use crate::wire::{
    AncestorDetached, ArchivalConfigRequest, ArchivalState, LsnLease, LsnLeaseRequest,
    TimelineVisibility,
};

/// How long a lease lasts: upstream's default `lsn_lease_length`.
const LEASE_SECONDS: i64 = 600;

/// Applies `change` to one timeline of an attached shard in one transaction, recording `kind`
/// with `reason`. 404 for an unknown timeline, and when the shard is not attached here.
async fn change_timeline(
    app: &App,
    headers: &HeaderMap,
    kind: &'static str,
    (tsid, timeline): (String, String),
    reason: String,
    change: impl FnOnce(&mut Timeline),
) -> Result<Timeline, ApiError> {
    let id = parse_tsid(&tsid)?;
    let timeline = parse_timeline(&timeline).map_err(ApiError::BadRequest)?;
    let mut txn = app.begin(headers, kind, Some(id)).await?;
    let mut next = txn.state().clone();
    let mut event = txn.event(kind, Some(id));
    event.generation = txn.state().locations.get(&id).and_then(|l| l.generation);
    event.timeline_id = Some(timeline.clone());
    event.reason = Some(reason);
    let outcome = next.update_timeline(id, &timeline, change);
    let changed = outcome.as_ref().map(|tl| *tl).map_err(|e| e.clone());
    txn.conclude(next, vec![event], outcome.map(|_| ())).await?;
    changed
}

pub async fn archival_config(
    State(app): State<Arc<App>>,
    Path(path): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    detached(async move {
        let request: ArchivalConfigRequest = parse_body(&body)?;
        let archived = request.state == ArchivalState::Archived;
        let reason = format!("{:?}", request.state);
        change_timeline(&app, &headers, "archival_config", path, reason, |tl| {
            tl.archived = archived;
        })
        .await?;
        Ok(json(StatusCode::OK, &()))
    })
    .await
}

pub async fn block_gc(
    State(app): State<Arc<App>>,
    Path(path): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    gc_block(app, path, headers, true).await
}

pub async fn unblock_gc(
    State(app): State<Arc<App>>,
    Path(path): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    gc_block(app, path, headers, false).await
}

async fn gc_block(
    app: Arc<App>,
    path: (String, String),
    headers: HeaderMap,
    blocked: bool,
) -> Response {
    detached(async move {
        let kind = if blocked { "block_gc" } else { "unblock_gc" };
        change_timeline(&app, &headers, kind, path, "manual".into(), |tl| {
            tl.gc_blocked = blocked;
        })
        .await?;
        Ok(json(StatusCode::OK, &()))
    })
    .await
}

/// A lease below what the timeline has already GC'd would be a lie; the simulator never GCs
/// past the initdb LSN, so only a lease below that is refused.
pub async fn lsn_lease(
    State(app): State<Arc<App>>,
    Path(path): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    detached(async move {
        let request: LsnLeaseRequest = parse_body(&body)?;
        if request.lsn < crate::wire::Lsn::INITDB {
            return Err(ApiError::BadRequest(format!(
                "lsn {} is below the GC cutoff {}",
                request.lsn,
                crate::wire::Lsn::INITDB
            )));
        }
        let reason = format!("lease at {}", request.lsn);
        change_timeline(&app, &headers, "lsn_lease", path, reason, |_| {}).await?;
        let until = chrono::Utc::now() + chrono::Duration::seconds(LEASE_SECONDS);
        let lease = LsnLease {
            valid_until: until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        Ok(json(StatusCode::OK, &lease))
    })
    .await
}

pub async fn mark_invisible(
    State(app): State<Arc<App>>,
    Path(path): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    detached(async move {
        let request: TimelineVisibility = if body.iter().all(u8::is_ascii_whitespace) {
            TimelineVisibility::default()
        } else {
            parse_body(&body)?
        };
        let invisible = !request.is_visible.unwrap_or(false);
        let reason = format!("invisible: {invisible}");
        change_timeline(&app, &headers, "mark_invisible", path, reason, |tl| {
            tl.invisible = invisible;
        })
        .await?;
        Ok(json(StatusCode::OK, &()))
    })
    .await
}

/// The simulator's timelines have no ancestors, so a detach reparents nothing; `detach_behavior`
/// must still be one upstream knows.
pub async fn detach_ancestor(
    State(app): State<Arc<App>>,
    Path(path): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    detached(async move {
        let behavior = query_param(query.as_deref(), "detach_behavior");
        if let Some(b) = &behavior
            && !matches!(b.as_str(), "v1" | "multi_level_and_no_reparent")
        {
            return Err(ApiError::BadRequest(format!(
                "unknown detach_behavior {b:?}"
            )));
        }
        let reason = format!("detach_behavior {}", behavior.as_deref().unwrap_or("v1"));
        change_timeline(&app, &headers, "detach_ancestor", path, reason, |_| {}).await?;
        Ok(json(
            StatusCode::OK,
            &AncestorDetached {
                reparented_timelines: Vec::new(),
            },
        ))
    })
    .await
}

/// Every layer is local already in the simulator: accepted, nothing to fetch.
pub async fn download_heatmap_layers(
    State(app): State<Arc<App>>,
    Path(path): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    detached(async move {
        let concurrency = crate::routes::query_u64(query.as_deref(), "concurrency")?;
        let recurse = query_param(query.as_deref(), "recurse");
        if let Some(r) = &recurse
            && !matches!(r.as_str(), "true" | "false")
        {
            return Err(ApiError::BadRequest(format!("recurse={r:?} is not a bool")));
        }
        let reason = format!("concurrency {concurrency:?}, recurse {recurse:?}");
        change_timeline(
            &app,
            &headers,
            "download_heatmap_layers",
            path,
            reason,
            |_| {},
        )
        .await?;
        Ok(json(StatusCode::ACCEPTED, &()))
    })
    .await
}

/// `PUT /v1/tenant/:tenant_shard_id/time_travel_remote_storage?travel_to=&done_if_after=`:
/// both RFC 3339, `done_if_after` not in the future. The shard must not be attached here (a
/// real pageserver would be rewriting what an attachment uses).
pub async fn time_travel(
    State(app): State<Arc<App>>,
    Path(tsid): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    detached(async move {
        let id = parse_tsid(&tsid)?;
        let mut txn = app.begin(&headers, "time_travel", Some(id)).await?;
        let time = |key: &str| -> Result<chrono::DateTime<chrono::FixedOffset>, ApiError> {
            let value = query_param(query.as_deref(), key)
                .ok_or_else(|| ApiError::BadRequest(format!("query parameter {key} missing")))?;
            chrono::DateTime::parse_from_rfc3339(&value)
                .map_err(|e| ApiError::BadRequest(format!("{key}={value:?}: {e}")))
        };
        let travel_to = time("travel_to")?;
        let done_if_after = time("done_if_after")?;
        if done_if_after < travel_to {
            return Err(ApiError::BadRequest(
                "done_if_after is before travel_to".into(),
            ));
        }
        if txn.state().locations.contains_key(&id) {
            return Err(ApiError::PreconditionFailed(format!(
                "{id} has a location here; detach it before time travel"
            )));
        }
        let mut event = txn.event("time_travel", Some(id));
        event.reason = Some(format!("to {}", travel_to.to_rfc3339()));
        let next = txn.state().clone();
        txn.commit(next, vec![event]).await?;
        Ok(json(StatusCode::OK, &()))
    })
    .await
}
