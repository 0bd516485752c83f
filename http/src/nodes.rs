//! `/control/v1/node`: the pageserver registry.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | /control/v1/node | 200 `null`; 409 different address/AZ; 400 bad body |
//! | GET | /control/v1/node | `[NodeDescribeResponse]` sorted by id |
//! | GET | /control/v1/node/{node_id} | `NodeDescribeResponse`; 404 unknown |

use axum::Json;
use axum::http::HeaderMap;
use std::collections::{BTreeMap, BTreeSet};

use state_machine::ids::TenantShardId;
use state_machine::wire::{NodeConfigureRequest, NodeShard, NodeShardResponse};
use state_machine::{Command, NodeAvailability, NodeDescribeResponse, NodeRegisterRequest, State};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, IdPath};
use crate::forward::wants_local_read;
use crate::propose::{propose, read_linearizable, read_local};

pub async fn register(
    axum::extract::State(app): axum::extract::State<AppState>,
    ApiJson(req): ApiJson<NodeRegisterRequest>,
) -> Result<Json<()>, ApiError> {
    req.validate()?;
    let response = propose(&app, Command::RegisterNode(req)).await?;
    tracing::info!(?response, "node register");
    Ok(Json(()))
}

/// Availability is the leader's soft state from heartbeats. A replica without running leader
/// services (a follower answering a local read) reports `Offline`, as upstream reports a node
/// before its first heartbeat.
fn availability(app: &AppState, node: u64) -> NodeAvailability {
    app.leader
        .get()
        .map_or(NodeAvailability::Offline, |l| l.availability(node))
}

fn describe_all(app: &AppState, state: &State) -> Vec<NodeDescribeResponse> {
    state
        .nodes()
        .map(|n| n.describe(availability(app, n.id)))
        .collect()
}

pub async fn list(
    axum::extract::State(app): axum::extract::State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<NodeDescribeResponse>>, ApiError> {
    let nodes = if wants_local_read(&headers) {
        read_local(&app, |s| describe_all(&app, s))
    } else {
        read_linearizable(&app, |s| describe_all(&app, s)).await?
    };
    Ok(Json(nodes))
}

pub async fn describe(
    axum::extract::State(app): axum::extract::State<AppState>,
    headers: HeaderMap,
    IdPath(id): IdPath,
) -> Result<Json<NodeDescribeResponse>, ApiError> {
    let one = |s: &State| s.node(id).map(|n| n.describe(availability(&app, id)));
    let found = if wants_local_read(&headers) {
        read_local(&app, one)
    } else {
        read_linearizable(&app, one).await?
    };
    found
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("Node {id} not registered")))
}

/// `PUT /control/v1/node/{node_id}/config`: scheduling policy (replicated) and an availability
/// override (leader soft state; `Offline` fails the node's shards over at once).
pub async fn configure(
    axum::extract::State(app): axum::extract::State<AppState>,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<NodeConfigureRequest>,
) -> Result<Json<()>, ApiError> {
    if req.node_id != id {
        return Err(ApiError::BadRequest(format!(
            "path node id {id} differs from body node_id {}",
            req.node_id
        )));
    }
    let services = app.leader.get()?;
    if app.state.read().node(id).is_none() {
        return Err(ApiError::NotFound(format!("Node {id} not registered")));
    }
    if let Some(policy) = req.scheduling {
        propose(
            &app,
            Command::SetNodeScheduling {
                node_id: id,
                policy,
            },
        )
        .await?;
    }
    if let Some(availability) = req.availability {
        services.set_availability(id, availability).await?;
    }
    Ok(Json(()))
}

/// `GET /control/v1/node/{node_id}/shards`: every shard intended or observed on the node.
pub async fn shards(
    axum::extract::State(app): axum::extract::State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<NodeShardResponse>, ApiError> {
    let services = app.leader.get()?;
    let observed: BTreeMap<_, _> = services.observed_on(id).into_iter().collect();
    let state = app.state.read();
    if state.node(id).is_none() {
        return Err(ApiError::NotFound(format!("Node {id} not registered")));
    }
    let mut ids: BTreeSet<TenantShardId> = observed.keys().copied().collect();
    ids.extend(
        state
            .shards()
            .filter(|s| s.intent.contains(id))
            .map(|s| s.id),
    );
    let shards = ids
        .into_iter()
        .map(|sid| NodeShard {
            tenant_shard_id: sid,
            is_intended_secondary: state
                .shard(&sid)
                .map(|s| s.intent.secondaries.contains(&id)),
            is_observed_secondary: observed.get(&sid).copied().flatten(),
        })
        .collect();
    Ok(Json(NodeShardResponse {
        node_id: id,
        shards,
    }))
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
