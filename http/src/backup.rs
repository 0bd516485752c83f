//! `GET /control/v1/backup` (leader-served, `admin`): the backup document of the applied state.
//!
//! Steps:
//! 1. a ReadIndex round, so every write acknowledged before the request is in the backup;
//! 2. the document is taken from this replica's store as a Raft snapshot is (one read
//!    transaction, one point of the log), encoded and hashed on a blocking thread;
//! 3. the bytes go back as `application/json`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::read::read_linearizable;

pub async fn take(State(app): State<AppState>) -> Result<Response, ApiError> {
    let Some(source) = app.backup.clone() else {
        return Err(ApiError::Unavailable(
            "this replica was started without a backup source; ask another replica".into(),
        ));
    };
    read_linearizable(&app, |_| ()).await?;
    // Informational only: the log id in the document is what places it.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let bytes = source
        .take(now_ms)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot take a backup: {e}")))?;
    tracing::info!(bytes = bytes.len(), "backup taken");
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}
