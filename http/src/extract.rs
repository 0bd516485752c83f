//! Extractors whose rejections are API errors (4xx with `msg`), not axum's plain-text bodies.
//!
//! Request bodies are admitted in three steps: the body limit (413 past it), the nesting bound
//! [`MAX_REQUEST_DEPTH`] (400), and strict decoding (400), which refuses the positional array
//! form of structs. The nesting bound keeps every command built from a request far below what
//! the log and RPC decoders accept (see `state_machine::limits`).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use state_machine::NodeId;
use state_machine::ids::shortened;
use state_machine::limits::{MAX_REQUEST_DEPTH, json_depth};

use crate::error::ApiError;
use crate::strict_json;

/// A JSON body; malformed JSON, wrong types, missing fields, too deep or too large are a 4xx
/// naming the problem.
pub struct ApiJson<T>(pub T);

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5
            && essence.starts_with("application/")
            && essence.to_ascii_lowercase().ends_with("+json"))
}

/// The body bytes within the router's limit: past it, 413.
pub(crate) async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(rejection.body_text())
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })
}

/// Admits a request body: the nesting bound, then strict decoding into `T`.
pub fn admit<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let depth = json_depth(bytes);
    if depth > MAX_REQUEST_DEPTH {
        return Err(ApiError::BadRequest(format!(
            "request body nests {depth} levels deep; at most {MAX_REQUEST_DEPTH} are accepted"
        )));
    }
    strict_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("Failed to deserialize the JSON body: {e}")))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::BadRequest(
                "Expected request with `Content-Type: application/json`".into(),
            ));
        }
        let bytes = body_bytes(req, state).await?;
        admit(&bytes).map(ApiJson)
    }
}

/// A query string; a malformed one is a 400 with `msg`, like a malformed body.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// The one path parameter of a route, as a string; a parameter that is not valid UTF-8 after
/// percent-decoding is a 400 with `msg`.
pub struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(raw)| ApiPath(raw))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// The two path parameters of a route (a tenant and a timeline), as strings.
pub struct ApiPathPair(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPathPair {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path((a, b))| ApiPathPair(a, b))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// A pageserver id from the last path segment, `{node_id}`.
pub struct IdPath(pub NodeId);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ApiPath(raw) = ApiPath::from_request_parts(parts, state).await?;
        raw.parse::<NodeId>().map(IdPath).map_err(|_| {
            ApiError::BadRequest(format!(
                "invalid id {:?}: expected an integer",
                shortened(&raw)
            ))
        })
    }
}
