//! One tracing span per request.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub async fn request_span(req: Request, next: Next) -> Response {
    let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path());
    async move {
        let resp = next.run(req).await;
        tracing::debug!(status = %resp.status(), "done");
        resp
    }
    .instrument(span)
    .await
}
