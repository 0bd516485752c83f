//! Leader forwarding: a follower proxies a leader-served request once and relays the answer.
//!
//! A proxied request carries [`FORWARDED_HEADER`]; a replica that receives one and is not the
//! leader answers 503 instead of forwarding again, so a request never bounces between replicas
//! while leadership moves. A leader handing over (`PUT /control/v1/step_down`) answers 503 too.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use state_machine::ReplicaId;

use crate::app::AppState;
use crate::error::ApiError;

pub const FORWARDED_HEADER: &str = "x-storcon-forwarded";
/// A GET with this header set to `true` is answered from this replica's applied state (stale
/// read), never forwarded.
pub const READ_LOCAL_HEADER: &str = "x-storcon-read-local";

/// Upstream proxies with a 40 s timeout; a request that takes longer is answered 503.
const PROXY_TIMEOUT: Duration = Duration::from_secs(40);

/// Headers that describe one hop, not the request, and must not be copied.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "content-length"
            | "te"
            | "upgrade"
            | "proxy-connection"
            | "trailer"
    )
}

pub async fn to_leader(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() == Method::GET && wants_local_read(req.headers()) {
        return next.run(req).await;
    }
    let metrics = app.metrics();
    match metrics.current_leader {
        Some(leader)
            if leader == app.node_id
                && app.membership.as_ref().is_some_and(|m| m.handing_over()) =>
        {
            ApiError::Unavailable(format!(
                "node {} is handing leadership over; retry",
                app.node_id
            ))
            .into_response()
        }
        Some(leader) if leader == app.node_id => next.run(req).await,
        _ if req.headers().contains_key(FORWARDED_HEADER) => ApiError::Unavailable(format!(
            "node {} received a forwarded request but is not the leader; retry",
            app.node_id
        ))
        .into_response(),
        Some(leader) => {
            let addr = metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|n| n.addr.clone());
            match addr {
                Some(addr) => proxy(&app, leader, &addr, req)
                    .await
                    .unwrap_or_else(IntoResponse::into_response),
                None => {
                    ApiError::Unavailable(format!("leader {leader} has no known address; retry"))
                        .into_response()
                }
            }
        }
        None => {
            ApiError::Unavailable("no leader is known at the moment; retry".into()).into_response()
        }
    }
}

pub(crate) fn wants_local_read(headers: &HeaderMap) -> bool {
    headers
        .get(READ_LOCAL_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

async fn proxy(
    app: &AppState,
    leader: ReplicaId,
    addr: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{path}", app.peer_scheme.base(addr));
    // The leader must see the path the client sent: refuse one that URL parsing would rewrite
    // (dot segments, backslashes, ...), rather than forward it to another route.
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| ApiError::BadRequest(format!("cannot forward this path: {e}")))?;
    let reparsed = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    if reparsed != path {
        return Err(ApiError::BadRequest(format!(
            "path {:?} is not in normal form (it would be forwarded as {:?})",
            state_machine::ids::shortened(path),
            state_machine::ids::shortened(&reparsed)
        )));
    }
    // The leader would refuse a larger body; say so here rather than send it.
    let body = axum::body::to_bytes(body, crate::app::API_BODY_LIMIT)
        .await
        .map_err(|e| {
            ApiError::PayloadTooLarge(format!(
                "request body over {} bytes: {e}",
                crate::app::API_BODY_LIMIT
            ))
        })?;
    let mut out = app
        .forward_client
        .request(parts.method.clone(), parsed)
        .timeout(PROXY_TIMEOUT)
        .header(FORWARDED_HEADER, app.node_id.to_string())
        .body(body);
    for (name, value) in parts.headers.iter() {
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    tracing::debug!(%leader, %url, "forwarding to leader");
    let resp = out.send().await.map_err(|e| {
        ApiError::Unavailable(format!(
            "cannot reach leader {leader} at {addr}: {e}; retry"
        ))
    })?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.map_err(|e| {
        ApiError::Unavailable(format!("leader {leader} answer was cut off: {e}; retry"))
    })?;
    let mut relayed = Response::builder().status(status);
    for (name, value) in headers.iter() {
        if !hop_by_hop(name) && name != header::DATE {
            relayed = relayed.header(name, value);
        }
    }
    relayed
        .body(Body::from(bytes))
        .map_err(|e| ApiError::Internal(format!("cannot relay leader answer: {e}")))
}
