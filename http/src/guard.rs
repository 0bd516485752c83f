//! Middleware that holds the API's promises for any request, whichever handler it reaches:
//!
//! - [`catch_panic`]: a handler that panics answers 500 with `msg` instead of dropping the
//!   connection (which a follower relays as "cannot reach leader");
//! - [`json_errors`]: every 4xx/5xx carries a JSON `{"msg": ...}` body, including the ones axum
//!   produces itself (405, path rejections, body limits);
//! - [`refuse_dot_segments`]: a path with a `.` or `..` segment (also percent-encoded) is a
//!   400, so a follower's HTTP client cannot normalize it into another route when it forwards.

use std::panic::AssertUnwindSafe;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;

use crate::error::ApiError;

pub async fn catch_panic(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(%method, path, panic = %what, "handler panicked");
            ApiError::Internal(format!("internal error while serving {method} {path}"))
                .into_response()
        }
    }
}

/// Error bodies larger than this are not rewritten (they are not axum's short texts).
const MAX_REWRITTEN_BODY: usize = 64 << 10;

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&resp) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_REWRITTEN_BODY)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let msg = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let body = serde_json::json!({ "msg": msg }).to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// Whether a raw path segment is `.` or `..`, also when percent-encoded.
fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
    decoded == "." || decoded == ".."
}

pub async fn refuse_dot_segments(req: Request, next: Next) -> Response {
    if req.uri().path().split('/').any(is_dot_segment) {
        return ApiError::BadRequest(format!(
            "path {:?} has a '.' or '..' segment; send the path without them",
            state_machine::ids::shortened(req.uri().path())
        ))
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn call(path: &str, method: axum::http::Method) -> (u16, String, String) {
        let router = Router::new()
            .route(
                "/panics",
                get(|| async {
                    let v: Vec<u8> = Vec::new();
                    #[allow(clippy::indexing_slicing)]
                    let x = v[3];
                    x.to_string()
                }),
            )
            .route("/ok", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(refuse_dot_segments))
            .layer(axum::middleware::from_fn(json_errors))
            .layer(axum::middleware::from_fn(catch_panic));
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("request");
        let resp = router.oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    fn msg(body: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        v["msg"].as_str().expect("a msg").to_string()
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_msg() {
        let (status, content_type, body) = call("/panics", axum::http::Method::GET).await;
        assert_eq!(status, 500);
        assert_eq!(content_type, "application/json");
        assert!(msg(&body).contains("internal error"), "{body}");
    }

    #[tokio::test]
    async fn axum_errors_become_json() {
        // 405 (axum answers it with an empty body) and 404 of an unknown route.
        let (status, content_type, body) = call("/ok", axum::http::Method::POST).await;
        assert_eq!((status, content_type.as_str()), (405, "application/json"));
        assert_eq!(msg(&body), "Method Not Allowed");
        let (status, _, body) = call("/nope", axum::http::Method::GET).await;
        assert_eq!(status, 404);
        assert!(!msg(&body).is_empty());
        let (status, _, body) = call("/ok", axum::http::Method::GET).await;
        assert_eq!((status, body.as_str()), (200, "fine"));
    }

    #[tokio::test]
    async fn dot_segments_are_refused() {
        for path in ["/a/../ok", "/a/%2e%2e/ok", "/./ok", "/ok/."] {
            let (status, _, body) = call(path, axum::http::Method::GET).await;
            assert_eq!(status, 400, "{path}");
            assert!(msg(&body).contains("segment"), "{body}");
        }
    }

    proptest::proptest! {
        /// The auth table and the dot-segment check take any path without panicking.
        #[test]
        fn path_checks_take_any_path(path in "(/|[a-z%.\\PC]{0,6}){0,8}") {
            let _ = path.split('/').any(is_dot_segment);
            for method in [axum::http::Method::GET, axum::http::Method::POST] {
                let _ = crate::auth::required_access(&method, &path);
            }
        }
    }

    #[test]
    fn dot_segments_are_recognized_in_any_encoding() {
        for s in [".", "..", "%2e", "%2E%2e", ".%2E", "%2e."] {
            assert!(is_dot_segment(s), "{s}");
        }
        for s in ["", "...", "a.", ".a", "%2e%2e%2e", "v1", "%2f"] {
            assert!(!is_dot_segment(s), "{s}");
        }
    }
}
