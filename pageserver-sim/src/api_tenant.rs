//! Tenant-wide operations: delete, status and shard split.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use serde_json::json;

use crate::app::{App, Deletion};
use crate::error::{ApiError, parse_body};
use crate::history::Event;
use crate::ids::TenantShardId;
use crate::model::LAYER_BYTES;
use crate::remote::covers;
use crate::routes::{detached, json, parse_tsid};
use crate::wire::{Mode, ShardSplitRequest, ShardSplitResponse, TenantInfo};

/// `DELETE /v1/tenant/:tenant_shard_id`, the controller's order to delete a tenant shard (or,
/// with the unsharded id, every shard of the tenant in every shard count): its local locations
/// go at once, its remote data in the background. 202 while that runs, 404 once nothing is
/// left. As upstream, this is not generation-validated: it is not a pageserver cleaning up
/// after itself but the controller removing the tenant.
pub async fn delete(
    State(app): State<Arc<App>>,
    Path(tsid): Path<String>,
    headers: HeaderMap,
) -> Response {
    detached(async move {
        let target = parse_tsid(&tsid)?;
        let mut txn = app.begin(&headers, "tenant_delete", Some(target)).await?;
        let running = Deletion::Tenant(target);
        if app.is_deleting(&running) {
            return Ok(json(StatusCode::ACCEPTED, &()));
        }
        let local: Vec<TenantShardId> = txn
            .state()
            .locations
            .keys()
            .filter(|id| covers(target, **id))
            .copied()
            .collect();
        let remote = app
            .remote
            .shards_under(target)
            .await
            .map_err(remote_error)?;
        if local.is_empty() && remote.is_empty() {
            return Err(ApiError::NotFound(format!("tenant {target} not found")));
        }
        let mut next = txn.state().clone();
        let mut events = Vec::new();
        for id in local {
            let mut event = txn.event("tenant_delete", Some(id));
            event.mode = Some(Mode::Detached);
            event.generation = next.locations.get(&id).and_then(|l| l.generation);
            next.locations.remove(&id);
            events.push(event);
        }
        txn.commit(next, events).await?;
        drop(txn);
        app.start_deleting(running.clone());
        let delay = app.behaviour().delete_delay_ms;
        let remove = delete_remote(Arc::clone(&app), running, remote, delay);
        if delay == 0 {
            // Done before answering, so the next call is 404 at once.
            remove.await?;
        } else {
            tokio::spawn(async move {
                if let Err(e) = remove.await {
                    tracing::warn!("remote tenant deletion failed: {}", e.msg());
                }
            });
        }
        Ok(json(StatusCode::ACCEPTED, &()))
    })
    .await
}

/// The remote part of a tenant delete: after `delay_ms`, every shard's remote data.
async fn delete_remote(
    app: Arc<App>,
    running: Deletion,
    shards: Vec<TenantShardId>,
    delay_ms: u64,
) -> Result<(), ApiError> {
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let mut outcome = Ok(());
    let mut events = Vec::new();
    for id in shards {
        if let Err(e) = app.remote.delete_shard(id).await {
            outcome = Err(remote_error(e));
            break;
        }
        let mut event = Event::new("remote_delete", Some(id), None);
        event.reason = Some("tenant delete".into());
        events.push(event);
    }
    let recorded = app.record(events).await;
    app.done_deleting(&running);
    outcome?;
    recorded.map_err(ApiError::from)
}

pub fn remote_error(e: std::io::Error) -> ApiError {
    ApiError::Internal(format!("remote storage: {e}"))
}

/// `GET /v1/tenant/:tenant_shard_id`: an attached shard's `TenantInfo`.
pub async fn get(
    State(app): State<Arc<App>>,
    Path(tsid): Path<String>,
    headers: HeaderMap,
) -> Response {
    detached(async move {
        let id = parse_tsid(&tsid)?;
        let txn = app.begin(&headers, "tenant_get", Some(id)).await?;
        let loc = txn.state().attached(id)?;
        let blocking = loc.timelines.values().filter(|t| t.gc_blocked).count();
        let info = TenantInfo {
            id,
            state: json!({"slug": "Active"}),
            current_physical_size: Some(loc.layers() * LAYER_BYTES),
            attachment_status: json!({"slug": "attached"}),
            generation: loc.generation.unwrap_or(0),
            gc_blocking: (blocking > 0)
                .then(|| format!("BlockingReasons {{ timelines: {blocking}, reasons: [Manual] }}")),
        };
        Ok(json(StatusCode::OK, &info))
    })
    .await
}

/// `PUT /v1/tenant/:tsid/shard_split`: the children attached in the parent's generation, the
/// parent's location dropped (history: a `split` event per child, then a
/// `split_parent_removed` event for the parent, mode `Detached`). Asked again once done (parent
/// gone, children attached in its generation) it answers the same children, recording a `split`
/// event per child with the reason `already split`.
///
/// Fault injection: `fail` answers 500 without splitting; `stall_ms` delays the answer AFTER
/// the split is durable (the lock released meanwhile), which is the case where a controller
/// gives up on a split the pageserver did perform.
pub async fn split(
    State(app): State<Arc<App>>,
    Path(tsid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    detached(async move {
        let parent = parse_tsid(&tsid)?;
        let behaviour = app.split_behaviour();
        let children = {
            let mut txn = app.begin(&headers, "split", Some(parent)).await?;
            let request: ShardSplitRequest = parse_body(&body)?;
            let mut next = txn.state().clone();
            let outcome = if behaviour.fail {
                Err(ApiError::Internal("split failure injected".into()))
            } else {
                next.split(parent, request.new_shard_count, request.new_stripe_size)
            };
            let events = match &outcome {
                Ok(done) => {
                    let mut events: Vec<Event> = done
                        .children
                        .iter()
                        .map(|child| {
                            let mut event = txn.event("split", Some(*child));
                            event.mode = next.locations.get(child).map(|l| l.mode);
                            event.generation = Some(done.generation);
                            event.reason = Some(if done.parent_removed {
                                format!("child of {parent}")
                            } else {
                                format!("child of {parent}; already split")
                            });
                            event
                        })
                        .collect();
                    if done.parent_removed {
                        let mut event = txn.event("split_parent_removed", Some(parent));
                        event.mode = Some(Mode::Detached);
                        event.generation = Some(done.generation);
                        event.reason = Some(format!(
                            "split into {} children; remote data kept",
                            done.children.len()
                        ));
                        events.push(event);
                    }
                    events
                }
                Err(_) => {
                    let mut event = txn.event("split", Some(parent));
                    event.generation = txn
                        .state()
                        .locations
                        .get(&parent)
                        .and_then(|l| l.generation);
                    vec![event]
                }
            };
            let (children, outcome) = match outcome {
                Ok(done) => (done.children, Ok(())),
                Err(e) => (Vec::new(), Err(e)),
            };
            txn.conclude(next, events, outcome).await?;
            children
        };
        if behaviour.stall_ms > 0 {
            tracing::info!(
                "split of {parent} done; stalling the answer {} ms",
                behaviour.stall_ms
            );
            tokio::time::sleep(Duration::from_millis(behaviour.stall_ms)).await;
        }
        Ok(json(
            StatusCode::OK,
            &ShardSplitResponse {
                new_shards: children,
            },
        ))
    })
    .await
}
