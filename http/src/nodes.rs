//! `/control/v1/node`: the pageserver registry.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | /control/v1/node | 200 `null`; 409 different address/AZ; 400 bad body |
//! | GET | /control/v1/node | `[NodeDescribeResponse]` sorted by id |
//! | GET | /control/v1/node/{node_id} | `NodeDescribeResponse`; 404 unknown |
//! | PUT | /control/v1/node/{node_id}/config | `{"node_id","availability","scheduling"}`; 200 `null`; 404 |
//! | GET | /control/v1/node/{node_id}/shards | `NodeShardResponse`; 404 |
//! | PUT | /control/v1/node/{node_id}/delete[?force] | 200 `null`; the delete runs in the background; then the id is tombstoned |
//! | DELETE | /control/v1/node/{node_id}/delete | cancels it; 202; 412 none running |
//! | DELETE | /control/v1/node/{node_id} | deprecated synchronous delete; 200 (unknown too) |
//! | GET, DELETE | /debug/v1/tombstone, /debug/v1/tombstone/{node_id} | deleted nodes; free an id (404 none, 409 in use) |
//! | PUT, DELETE | /control/v1/node/{node_id}/drain, /fill | start or cancel; 202 `null`; 404; 412 another operation, policy not Active, nothing to move to, or (cancel) none running; 409 already running; 503 node unavailable |
//! | PUT | /control/v1/node/{node_id}/drain, /fill `?dry_run=true` | 200 `DryRunResponse`: the moves it would make, the same refusals, nothing started |

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use state_machine::node_operation::NodeOperationKind;
use storcon_api::dry_run::DryRunQuery;

use state_machine::{NodeAvailability, NodeDescribeResponse, NodeId, NodeRegisterRequest, State};
use storcon_api::wire::{NodeConfigureRequest, NodeShardResponse};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, IdPath};
use crate::forward::wants_local_read;
use crate::read::{read_linearizable, read_local};

/// Needs only the replicated state, so it is answered while the leader starts up too.
pub async fn register(
    axum::extract::State(app): axum::extract::State<AppState>,
    ApiJson(req): ApiJson<NodeRegisterRequest>,
) -> Result<Json<()>, ApiError> {
    require_https_port(&app, &req)?;
    Ok(Json(app.leader.get_starting()?.node_register(req).await?))
}

/// With `use_https_pageserver_api` the controller calls pageservers only over HTTPS, so a node
/// that names no HTTPS port could never be reached: refuse it before anything is written.
pub(crate) fn require_https_port(
    app: &AppState,
    req: &NodeRegisterRequest,
) -> Result<(), ApiError> {
    if app.pageserver_https && req.listen_https_port.is_none() {
        return Err(ApiError::BadRequest(format!(
            "node {} has no listen_https_port, but this controller calls pageservers over HTTPS \
             only (use_https_pageserver_api)",
            req.node_id
        )));
    }
    Ok(())
}

/// Availability is the leader's soft state from heartbeats. A replica without running leader
/// services (a follower answering a local read) reports `Offline`, as upstream reports a node
/// before its first heartbeat.
fn availability(app: &AppState, node: NodeId) -> NodeAvailability {
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
    Ok(Json(app.leader.get()?.node_configure(id, req).await?))
}

/// `GET /control/v1/node/{node_id}/shards`: every shard intended or observed on the node.
pub async fn shards(
    axum::extract::State(app): axum::extract::State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<NodeShardResponse>, ApiError> {
    Ok(Json(app.leader.get()?.node_shards(id).await?))
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

async fn node_operation(
    app: AppState,
    id: state_machine::NodeId,
    kind: NodeOperationKind,
    start: bool,
) -> Result<(StatusCode, Json<()>), ApiError> {
    app.leader
        .get()?
        .node_operation(id, kind, start, false)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(())))
}

/// A start, or with `?dry_run=true` its planned moves (200) and nothing started.
async fn node_operation_start(
    app: AppState,
    id: state_machine::NodeId,
    kind: NodeOperationKind,
    q: DryRunQuery,
) -> Result<Response, ApiError> {
    if q.dry_run {
        let preview = app.leader.get()?.node_operation_preview(id, kind).await?;
        return Ok(Json(preview).into_response());
    }
    Ok(node_operation(app, id, kind, true).await?.into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

/// `PUT /control/v1/node/{node_id}/delete[?force=true]`: 200; the delete runs in the
/// background (moves everything off, then deletes and tombstones the node).
pub async fn delete_start(
    axum::extract::State(app): axum::extract::State<AppState>,
    IdPath(id): IdPath,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery<DeleteQuery>,
) -> Result<Json<()>, ApiError> {
    app.leader
        .get()?
        .node_operation(id, NodeOperationKind::Delete, true, q.force)
        .await?;
    Ok(Json(()))
}

/// `DELETE /control/v1/node/{node_id}/delete`: cancels a running delete; 202.
pub async fn delete_cancel(
    axum::extract::State(app): axum::extract::State<AppState>,
    IdPath(id): IdPath,
) -> Result<(StatusCode, Json<()>), ApiError> {
    node_operation(app, id, NodeOperationKind::Delete, false).await
}

/// `DELETE /control/v1/node/{node_id}`: the deprecated synchronous delete; 200, also for an
/// unknown node.
pub async fn delete_now(
    axum::extract::State(app): axum::extract::State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<()>, ApiError> {
    app.leader.get()?.node_delete_now(id).await?;
    Ok(Json(()))
}

/// `GET /debug/v1/tombstone`: `[NodeDescribeResponse]` of the deleted nodes.
pub async fn tombstones(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> Result<Json<Vec<NodeDescribeResponse>>, ApiError> {
    Ok(Json(app.leader.get()?.tombstones().await?))
}

/// `DELETE /debug/v1/tombstone/{node_id}`: the id may register again; 404 none, 409 in use.
pub async fn tombstone_delete(
    axum::extract::State(app): axum::extract::State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<()>, ApiError> {
    app.leader.get()?.tombstone_delete(id).await?;
    Ok(Json(()))
}

/// `PUT /control/v1/node/{node_id}/drain[?dry_run=true]`: 202; the drain runs in the
/// background.
pub async fn drain_start(
    axum::extract::State(app): axum::extract::State<AppState>,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<DryRunQuery>,
) -> Result<Response, ApiError> {
    node_operation_start(app, id, NodeOperationKind::Drain, q).await
}

/// `DELETE /control/v1/node/{node_id}/drain`: cancels a running drain; 202.
pub async fn drain_cancel(
    axum::extract::State(app): axum::extract::State<AppState>,
    IdPath(id): IdPath,
) -> Result<(StatusCode, Json<()>), ApiError> {
    node_operation(app, id, NodeOperationKind::Drain, false).await
}

/// `PUT /control/v1/node/{node_id}/fill[?dry_run=true]`: 202; the fill runs in the
/// background.
pub async fn fill_start(
    axum::extract::State(app): axum::extract::State<AppState>,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<DryRunQuery>,
) -> Result<Response, ApiError> {
    node_operation_start(app, id, NodeOperationKind::Fill, q).await
}

/// `DELETE /control/v1/node/{node_id}/fill`: cancels a running fill; 202.
pub async fn fill_cancel(
    axum::extract::State(app): axum::extract::State<AppState>,
    IdPath(id): IdPath,
) -> Result<(StatusCode, Json<()>), ApiError> {
    node_operation(app, id, NodeOperationKind::Fill, false).await
}
