//! The applications API: `/api/apps`, `/api/apps/{app}`, its history and
//! its live stream. Views are built under the registry's lock and
//! serialised after.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, live};
use crate::apps::view;

fn not_found(app: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no application {app:?}") })))
        .into_response()
}

/// `GET /api/apps`: every application with its instances, CPU, memory,
/// calls per second and slowest p99.
pub async fn list(State(state): State<AppState>) -> Response {
    let summaries = {
        let reg = state.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        view::summaries(&reg)
    };
    Json(summaries).into_response()
}

/// `GET /api/apps/{app}`: its instances and timers now.
pub async fn one(State(state): State<AppState>, Path(app): Path<String>) -> Response {
    let found = {
        let reg = state.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        view::app(&reg, &app)
    };
    match found {
        Some(view) => Json(view).into_response(),
        None => not_found(&app),
    }
}

/// Query of `GET /api/apps/{app}/history`.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// Unix milliseconds or RFC 3339; default: everything kept (an hour).
    since: Option<String>,
}

/// `GET /api/apps/{app}/history?since=...`: columns per instance (CPU,
/// memory, calls per second) and per timer (calls per second, p50, p90,
/// p99 per step).
pub async fn history(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let since = match live::since(q.since.as_deref()) {
        Ok(since) => since,
        Err(e) => return live::bad_request(e),
    };
    let found = {
        let reg = state.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        view::history(&reg, &app, since)
    };
    match found {
        Some(history) => Json(history).into_response(),
        None => not_found(&app),
    }
}

/// `GET /api/apps/{app}/stream`: `instance` events (a new point of an
/// instance) and `step` events (a timer's step closed).
pub async fn stream(
    State(state): State<AppState>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Response {
    live::stream(&state, Some(view::topic(&app)), &headers)
}

/// `GET /api/stream/apps`: every application's events.
pub async fn stream_all(State(state): State<AppState>, headers: HeaderMap) -> Response {
    live::stream(&state, Some("app:*".into()), &headers)
}
