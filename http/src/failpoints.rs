//! `/debug/v1/failpoints`: configure and list this replica's failpoints (the registry is
//! `storcon_failpoints`, shared with the controller). Answered by the replica asked.

use axum::Json;
use axum::extract::State;
use storcon_failpoints::{FailpointConfig, FailpointStatus};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;

fn refuse_disabled(app: &AppState) -> Result<(), ApiError> {
    if app.failpoints.enabled() {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "failpoints are disabled on this replica ([testing] failpoints = true enables them)"
                .into(),
        ))
    }
}

/// `PUT /debug/v1/failpoints`: configures this replica only (never forwarded). All entries are
/// checked before any is applied.
pub async fn put(
    State(app): State<AppState>,
    ApiJson(configs): ApiJson<Vec<FailpointConfig>>,
) -> Result<Json<()>, ApiError> {
    refuse_disabled(&app)?;
    let configs: Vec<(&str, &str)> = configs
        .iter()
        .map(|c| (c.name.as_str(), c.actions.as_str()))
        .collect();
    app.failpoints
        .configure_all(&configs)
        .map_err(ApiError::BadRequest)?;
    Ok(Json(()))
}

/// `GET /debug/v1/failpoints`: every failpoint configured or reached on this replica.
pub async fn list(State(app): State<AppState>) -> Result<Json<Vec<FailpointStatus>>, ApiError> {
    refuse_disabled(&app)?;
    Ok(Json(app.failpoints.statuses()))
}
