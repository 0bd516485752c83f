//! API errors: each maps to one status and a `{"msg": ...}` body, as upstream.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use state_machine::Rejection;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A token or a Raft RPC sender that is not allowed.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// No leader, leadership moved, or the cluster cannot reach quorum: the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A Raft RPC addressed to another node.
    #[error("{0}")]
    Misdirected(String),
    #[error("{0}")]
    Internal(String),
    /// Not done within the request's deadline (504).
    #[error("{0}")]
    Timeout(String),
    /// A pageserver's error status, passed on to the client as upstream's passthroughs do.
    #[error("{msg}")]
    Relayed { status: StatusCode, msg: String },
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Relayed { status, .. } => *status,
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::BadRequest(m) => ApiError::BadRequest(m),
            Rejection::Conflict(m) => ApiError::Conflict(m),
            Rejection::NotFound(m) => ApiError::NotFound(m),
            Rejection::PreconditionFailed(m) => ApiError::PreconditionFailed(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(_) => tracing::warn!(%status, msg = %self, "request failed"),
            // Expected while leadership moves or a peer starts; clients retry.
            ApiError::Unavailable(_) => tracing::debug!(%status, msg = %self, "request refused"),
            _ => {}
        }
        (status, Json(serde_json::json!({ "msg": self.to_string() }))).into_response()
    }
}
