//! Timelines of attached shards: create, list, detail, delete, wait_lsn.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::api_tenant::remote_error;
use crate::app::{App, Deletion};
use crate::error::{ApiError, parse_body};
use crate::history::Event;
use crate::ids::{TenantShardId, parse_timeline};
use crate::model::Timeline;
use crate::routes::{detached, json, parse_tsid};
use crate::wire::{Lsn, TimelineCreateRequest, TimelineInfo};

fn info(id: TenantShardId, timeline_id: &str, tl: &Timeline) -> TimelineInfo {
    TimelineInfo {
        tenant_id: id,
        timeline_id: timeline_id.to_owned(),
        ancestor_timeline_id: None,
        last_record_lsn: tl.last_record_lsn,
        disk_consistent_lsn: tl.disk_consistent_lsn,
        remote_consistent_lsn: tl.disk_consistent_lsn,
        state: "Active",
        is_archived: Some(tl.archived),
        is_invisible: Some(tl.invisible),
    }
}

/// 201 also when the timeline already exists (a retried create).
pub async fn create(
    State(app): State<Arc<App>>,
    Path(tsid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    detached(async move {
        let id = parse_tsid(&tsid)?;
        let mut txn = app.begin(&headers, "timeline_create", Some(id)).await?;
        let request: TimelineCreateRequest = parse_body(&body)?;
        let timeline = parse_timeline(&request.new_timeline_id).map_err(ApiError::BadRequest)?;
        if app.is_deleting(&Deletion::Timeline(id, timeline.clone())) {
            return Err(ApiError::Conflict(format!(
                "timeline {timeline} of {id} is being deleted"
            )));
        }
        let mut next = txn.state().clone();
        if next.create_timeline(id, &timeline)? {
            let mut event = txn.event("timeline_create", Some(id));
            event.generation = next.locations.get(&id).and_then(|l| l.generation);
            event.timeline_id = Some(timeline.clone());
            txn.commit(next, vec![event]).await?;
        }
        let loc = txn.state().attached(id)?;
        let tl = loc
            .timelines
            .get(&timeline)
            .ok_or_else(|| ApiError::Internal(format!("timeline {timeline} vanished")))?;
        Ok(json(StatusCode::CREATED, &info(id, &timeline, tl)))
    })
    .await
}

pub async fn list(
    State(app): State<Arc<App>>,
    Path(tsid): Path<String>,
    headers: HeaderMap,
) -> Response {
    detached(async move {
        let id = parse_tsid(&tsid)?;
        let txn = app.begin(&headers, "timeline_list", Some(id)).await?;
        let loc = txn.state().attached(id)?;
        let infos: Vec<TimelineInfo> = loc
            .timelines
            .iter()
            .map(|(tl_id, tl)| info(id, tl_id, tl))
            .collect();
        Ok(json(StatusCode::OK, &infos))
    })
    .await
}

pub async fn detail(
    State(app): State<Arc<App>>,
    Path((tsid, timeline)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    detached(async move {
        let id = parse_tsid(&tsid)?;
        let timeline = parse_timeline(&timeline).map_err(ApiError::BadRequest)?;
        let txn = app.begin(&headers, "timeline_detail", Some(id)).await?;
        let loc = txn.state().attached(id)?;
        let tl = loc
            .timelines
            .get(&timeline)
            .ok_or_else(|| ApiError::NotFound(format!("timeline {timeline} of {id} not found")))?;
        Ok(json(StatusCode::OK, &info(id, &timeline, tl)))
    })
    .await
}

/// 202 when this call started the deletion, 409 while it runs, 404 once it is gone, 412 when
/// the shard is not attached here (the upstream "Requested tenant is missing"). The local
/// timeline goes at once; its remote data only if the controller validated the generation
/// (otherwise both are kept in `retained`), after `delete_delay_ms`.
pub async fn delete(
    State(app): State<Arc<App>>,
    Path((tsid, timeline)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    detached(async move {
        let id = parse_tsid(&tsid)?;
        let timeline = parse_timeline(&timeline).map_err(ApiError::BadRequest)?;
        let mut txn = app.begin(&headers, "timeline_delete", Some(id)).await?;
        let running = Deletion::Timeline(id, timeline.clone());
        if app.is_deleting(&running) {
            return Err(ApiError::Conflict(format!(
                "timeline {timeline} of {id}: deletion already in progress"
            )));
        }
        let generation = match txn.state().attached(id) {
            Ok(loc) if loc.timelines.contains_key(&timeline) => loc.generation,
            Ok(_) => {
                return Err(ApiError::NotFound(format!(
                    "timeline {timeline} of {id} not found"
                )));
            }
            Err(_) => {
                return Err(ApiError::PreconditionFailed(
                    "Requested tenant is missing".into(),
                ));
            }
        };
        let validated = match generation {
            Some(g) => txn.validate(&[(id, g)]).await?.get(&id).copied().flatten(),
            None => None,
        };
        let mut next = txn.state().clone();
        let outcome = next.delete_timeline(id, &timeline, validated);
        let mut event = txn.event("timeline_delete", Some(id));
        event.generation = generation;
        event.timeline_id = Some(timeline.clone());
        txn.conclude(next, vec![event], outcome).await?;
        drop(txn);
        if validated != Some(true) {
            return Ok(json(StatusCode::ACCEPTED, &()));
        }
        app.start_deleting(running.clone());
        let delay = app.behaviour().delete_delay_ms;
        let remove = delete_remote(Arc::clone(&app), running, delay);
        if delay == 0 {
            remove.await?;
        } else {
            tokio::spawn(async move {
                if let Err(e) = remove.await {
                    tracing::warn!("remote timeline deletion failed: {}", e.msg());
                }
            });
        }
        Ok(json(StatusCode::ACCEPTED, &()))
    })
    .await
}

async fn delete_remote(app: Arc<App>, running: Deletion, delay_ms: u64) -> Result<(), ApiError> {
    let Deletion::Timeline(id, timeline) = &running else {
        return Err(ApiError::Internal("not a timeline deletion".into()));
    };
    tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
    let outcome = app
        .remote
        .delete_timeline(*id, timeline)
        .await
        .map_err(remote_error);
    let mut event = Event::new("remote_delete", Some(*id), None);
    event.timeline_id = Some(timeline.clone());
    event.reason = Some("timeline delete".into());
    let recorded = if outcome.is_ok() {
        app.record(vec![event]).await.map_err(ApiError::from)
    } else {
        Ok(())
    };
    app.done_deleting(&running);
    outcome.and(recorded)
}

/// Body `{"<timeline_id>": "<lsn>", ..., "timeout": {"secs": N, "nanos": N}}`. A location
/// attached less than `catch_up_ms` ago is still catching up: the call waits up to its
/// timeout for that, then answers 202 (not yet) or 200. 404 when none of the timelines is
/// present. Recorded in the history with the LSNs asked for.
pub async fn wait_lsn(
    State(app): State<Arc<App>>,
    Path(tsid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    detached(async move {
        let id = parse_tsid(&tsid)?;
        let (wanted, timeout) = parse_wait_lsn(&body)?;
        let left = app.catch_up_left(id);
        tokio::time::sleep(left.min(timeout)).await;
        let caught_up = left <= timeout;
        let mut txn = app.begin(&headers, "wait_lsn", Some(id)).await?;
        let mut next = txn.state().clone();
        let outcome = if caught_up {
            next.wait_lsn(id, &wanted)
        } else {
            txn.state().attached(id).map(|_| ())
        };
        let mut event = txn.event("wait_lsn", Some(id));
        event.generation = txn.state().locations.get(&id).and_then(|l| l.generation);
        event.reason = Some(format!(
            "{} timelines{}",
            wanted.len(),
            if caught_up { "" } else { "; still catching up" }
        ));
        txn.conclude(next, vec![event], outcome).await?;
        let status = if caught_up {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        Ok(json(status, &()))
    })
    .await
}

fn parse_wait_lsn(body: &[u8]) -> Result<(BTreeMap<String, Lsn>, Duration), ApiError> {
    let fields: serde_json::Map<String, Value> = parse_body(body)?;
    let mut wanted = BTreeMap::new();
    let mut timeout = Duration::from_secs(10);
    for (key, value) in fields {
        if key == "timeout" {
            let secs = value.get("secs").and_then(Value::as_u64);
            let nanos = value.get("nanos").and_then(Value::as_u64).unwrap_or(0);
            timeout = match secs {
                Some(s) => Duration::from_secs(s) + Duration::from_nanos(nanos),
                None => {
                    return Err(ApiError::BadRequest(format!(
                        "timeout {value} is not {{\"secs\", \"nanos\"}}"
                    )));
                }
            };
            continue;
        }
        let timeline = parse_timeline(&key).map_err(ApiError::BadRequest)?;
        let lsn = value
            .as_str()
            .ok_or_else(|| ApiError::BadRequest(format!("lsn of {timeline} is not a string")))?
            .parse::<Lsn>()
            .map_err(ApiError::BadRequest)?;
        wanted.insert(timeline, lsn);
    }
    Ok((wanted, timeout))
}
