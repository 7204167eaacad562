//! The checks API: `/api/checks` (the fleet's, failing first), a host's
//! checks, one check's recent runs, and the live stream of results.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, live};
use crate::checks::view;

fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": what }))).into_response()
}

/// `GET /api/checks`: every check of the fleet, failing ones first.
pub async fn list(State(state): State<AppState>) -> Response {
    let checks = {
        let reg = state.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        view::list(&reg, crate::time::now_ms())
    };
    Json(checks).into_response()
}

/// `GET /api/hosts/{id}/checks`: one host's checks.
pub async fn of_host(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let checks = {
        let reg = state.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        view::of_host(&reg, &id, crate::time::now_ms())
    };
    match checks {
        Some(checks) => Json(checks).into_response(),
        None => not_found(format!("no host with id {id:?}")),
    }
}

/// Query of the history endpoint.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// Unix milliseconds or RFC 3339; default: everything kept (an hour).
    since: Option<String>,
}

/// `GET /api/hosts/{id}/checks/{name}/history?since=...`: start times,
/// durations and pass/fail of its recent runs, as columns.
pub async fn history(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let since = match live::since(q.since.as_deref()) {
        Ok(since) => since,
        Err(e) => return live::bad_request(e),
    };
    let found = {
        let reg = state.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        view::history(&reg, &id, &name, since)
    };
    match found {
        Some(history) => Json(history).into_response(),
        None => not_found(format!("no check {name:?} on host {id:?}")),
    }
}

/// `GET /api/stream/checks`: a `check` event for every result of every
/// check.
pub async fn stream(State(state): State<AppState>, headers: HeaderMap) -> Response {
    live::stream(&state, Some("check:*".into()), &headers)
}
