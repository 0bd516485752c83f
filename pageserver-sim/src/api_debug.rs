//! Test-only routes under `/debug/sim/`: read the history and state, switch split faults.
//! Not term-fenced: they are for tests and tools, not for the controller.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::app::App;
use crate::error::{ApiError, parse_body};
use crate::routes::json;
use crate::wire::{SimBehaviour, SplitBehaviour};

/// The history file as a JSON array, oldest first.
pub async fn history(State(app): State<Arc<App>>) -> Response {
    match app.history().await {
        Ok(lines) => json(StatusCode::OK, &lines),
        Err(e) => axum::response::IntoResponse::into_response(ApiError::from(e)),
    }
}

/// The whole persisted state (`locations.json` with `locations.journal` replayed on top).
pub async fn state(State(app): State<Arc<App>>) -> Response {
    json(StatusCode::OK, &app.snapshot().await)
}

pub async fn get_split_behaviour(State(app): State<Arc<App>>) -> Response {
    json(StatusCode::OK, &app.split_behaviour())
}

pub async fn set_split_behaviour(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match parse_body::<SplitBehaviour>(&body) {
        Ok(behaviour) => {
            tracing::info!("split behaviour now {behaviour:?}");
            app.set_split_behaviour(behaviour);
            json(StatusCode::OK, &behaviour)
        }
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

pub async fn get_behaviour(State(app): State<Arc<App>>) -> Response {
    json(StatusCode::OK, &app.behaviour())
}

pub async fn set_behaviour(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match parse_body::<SimBehaviour>(&body) {
        Ok(behaviour) => {
            tracing::info!("behaviour now {behaviour:?}");
            app.set_behaviour(behaviour);
            json(StatusCode::OK, &behaviour)
        }
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}
