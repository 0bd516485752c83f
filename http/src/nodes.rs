//! `/control/v1/node`: the pageserver registry.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | /control/v1/node | 200 `null`; 409 different address/AZ; 400 bad body |
//! | GET | /control/v1/node | `[NodeDescribeResponse]` sorted by id |
//! | GET | /control/v1/node/{node_id} | `NodeDescribeResponse`; 404 unknown |

use axum::Json;
use axum::http::HeaderMap;
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

/// Availability is the leader's soft state from heartbeats; until the heartbeater exists every
/// node is reported `Offline`, the upstream state before a first successful heartbeat.
fn availability(_node: u64) -> NodeAvailability {
    NodeAvailability::Offline
}

fn describe_all(state: &State) -> Vec<NodeDescribeResponse> {
    state
        .nodes()
        .map(|n| n.describe(availability(n.id)))
        .collect()
}

pub async fn list(
    axum::extract::State(app): axum::extract::State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<NodeDescribeResponse>>, ApiError> {
    let nodes = if wants_local_read(&headers) {
        read_local(&app, describe_all)
    } else {
        read_linearizable(&app, describe_all).await?
    };
    Ok(Json(nodes))
}

pub async fn describe(
    axum::extract::State(app): axum::extract::State<AppState>,
    headers: HeaderMap,
    IdPath(id): IdPath,
) -> Result<Json<NodeDescribeResponse>, ApiError> {
    let one = |s: &State| s.node(id).map(|n| n.describe(availability(id)));
    let found = if wants_local_read(&headers) {
        read_local(&app, one)
    } else {
        read_linearizable(&app, one).await?
    };
    found
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("Node {id} not registered")))
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
