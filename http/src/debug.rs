//! `/debug/v1`: operator and test hooks.

use axum::Json;
use axum::extract::State;

use crate::app::AppState;
use crate::error::ApiError;

/// Queues a reconcile for every shard that needs one; answers how many.
pub async fn reconcile_all(State(app): State<AppState>) -> Result<Json<usize>, ApiError> {
    Ok(Json(app.leader.get()?.reconcile_all()))
}

/// 200 `null` when replicated state and the leader's views agree, else 500 listing problems.
pub async fn consistency_check(State(app): State<AppState>) -> Result<Json<()>, ApiError> {
    crate::propose::read_linearizable(&app, |_| ()).await?;
    app.leader.get()?.consistency_check().await?;
    Ok(Json(()))
}
