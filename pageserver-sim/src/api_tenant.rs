//! Tenant-wide operations: delete and shard split.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::app::App;
use crate::error::{ApiError, parse_body};
use crate::ids::{TenantShardId, parse_tenant};
use crate::routes::{detached, json, parse_tsid};
use crate::wire::{Mode, ShardSplitRequest, ShardSplitResponse};

/// `DELETE /v1/tenant/:tenant_id`: drops every local shard of the tenant (202); 404 once none
/// is left. Attached data is dropped only for generations the controller validates.
pub async fn delete(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    detached(async move {
        let tenant = parse_tenant(&tenant).map_err(ApiError::BadRequest)?;
        let mut txn = app.begin(&headers, "tenant_delete", None).await?;
        let shards: Vec<TenantShardId> = txn
            .state()
            .locations
            .keys()
            .filter(|id| id.tenant == tenant)
            .copied()
            .collect();
        if shards.is_empty() {
            return Err(ApiError::NotFound(format!(
                "tenant {tenant:032x} not found"
            )));
        }
        let to_validate: Vec<_> = shards
            .iter()
            .filter_map(|id| txn.state().deletion_to_validate(*id))
            .collect();
        let validated = txn.validate(&to_validate).await?;
        let mut next = txn.state().clone();
        let mut events = Vec::new();
        for id in shards {
            let mut event = txn.event("tenant_delete", Some(id));
            event.mode = Some(Mode::Detached);
            event.generation = next.locations.get(&id).and_then(|l| l.generation);
            next.remove(id, validated.get(&id).copied().flatten(), "tenant delete");
            events.push(event);
        }
        txn.commit(next, events).await?;
        Ok(json(StatusCode::ACCEPTED, &()))
    })
    .await
}

/// `PUT /v1/tenant/:tsid/shard_split`. Fault injection: `fail` answers 500 without splitting;
/// `stall_ms` delays the answer AFTER the split is durable (the lock released meanwhile), which
/// is the case where a controller gives up on a split the pageserver did perform.
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
            let generation = txn
                .state()
                .locations
                .get(&parent)
                .and_then(|l| l.generation);
            let outcome = if behaviour.fail {
                Err(ApiError::Internal("split failure injected".into()))
            } else {
                next.split(parent, request.new_shard_count, request.new_stripe_size)
            };
            let events = match &outcome {
                Ok(children) => children
                    .iter()
                    .map(|child| {
                        let mut event = txn.event("split", Some(*child));
                        event.mode = next.locations.get(child).map(|l| l.mode);
                        event.generation = generation;
                        event.reason = Some(format!("child of {parent}"));
                        event
                    })
                    .collect(),
                Err(_) => {
                    let mut event = txn.event("split", Some(parent));
                    event.generation = generation;
                    vec![event]
                }
            };
            let (children, outcome) = match outcome {
                Ok(children) => (children, Ok(())),
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
