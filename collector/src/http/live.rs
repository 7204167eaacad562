//! The live side of the API: recent history per host, and server-sent
//! event streams of every host (`/api/stream`) or one (`/api/hosts/{id}/stream`).
//!
//! Streams send `sample` and `state` events with increasing ids; a browser
//! that reconnects sends `Last-Event-ID` and gets what it missed, or a
//! `reset` event when that is older than the hub keeps. Comments keep idle
//! connections alive through proxies. Every stream ends on shutdown.

use std::{collections::BTreeMap, convert::Infallible, time::Duration};

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::wrappers::ReceiverStream;

use super::AppState;
use crate::{history::FIELDS, stream::Event};

/// Query of `GET /api/hosts/{id}/history`.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// Unix milliseconds or RFC 3339; default: everything kept.
    since: Option<String>,
    /// Comma-separated field names (see `docs/operations.md`), `cores` for
    /// per-CPU busy percent; default: all.
    metric: Option<String>,
}

pub(super) fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

/// The `since=` of a history query (0 when absent), or why it is wrong
/// (for [`bad_request`]).
pub(super) fn since(text: Option<&str>) -> Result<u64, String> {
    Ok(text.map(parse_since).transpose()?.unwrap_or(0))
}

/// `since=`: Unix milliseconds or RFC 3339.
fn parse_since(text: &str) -> Result<u64, String> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("since={text:?}: expected Unix milliseconds or RFC 3339 ({e})"))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

/// `GET /api/hosts/{id}/history?since=...&metric=...`: columns of points,
/// `{"t": [...], "cpu_percent": [...], "cores": [[cpu0...], [cpu1...]]}`,
/// the shape charting libraries take.
pub async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let since = match since(q.since.as_deref()) {
        Ok(since) => since,
        Err(e) => return bad_request(e),
    };
    let wanted: Vec<&str> = match &q.metric {
        Some(list) => list.split(',').map(str::trim).filter(|m| !m.is_empty()).collect(),
        None => FIELDS.iter().copied().chain(["cores"]).collect(),
    };
    if let Some(unknown) = wanted.iter().find(|m| **m != "cores" && !FIELDS.contains(m)) {
        return bad_request(format!(
            "unknown metric {unknown:?}; expected some of {}, cores",
            FIELDS.join(", ")
        ));
    }
    let reg = state.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(host) = reg.by_id(&id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no host with id {id:?}") })),
        )
            .into_response();
    };
    let points: Vec<_> = host.history.since(since).collect();
    let finite = |v: f32| if v.is_finite() { Value::from(f64::from(v)) } else { Value::Null };
    let mut out = BTreeMap::new();
    out.insert("t".to_string(), Value::from(points.iter().map(|p| p.t_ms).collect::<Vec<_>>()));
    for name in &wanted {
        if *name == "cores" {
            let cores = points.iter().map(|p| p.cores.len()).max().unwrap_or(0);
            let columns: Vec<Value> = (0..cores)
                .map(|c| {
                    Value::from(
                        points
                            .iter()
                            .map(|p| p.cores.get(c).map_or(Value::Null, |v| finite(*v)))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            out.insert("cores".into(), Value::from(columns));
        } else if let Some(i) = FIELDS.iter().position(|f| f == name) {
            out.insert(
                (*name).to_string(),
                Value::from(points.iter().map(|p| finite(p.fields[i])).collect::<Vec<_>>()),
            );
        }
    }
    drop(reg);
    Json(out).into_response()
}

/// Query of `GET /api/hosts/{id}/groups`.
#[derive(Debug, Deserialize)]
pub struct GroupsQuery {
    /// Unix milliseconds or RFC 3339; default: everything kept.
    since: Option<String>,
    /// How many groups per chart (the busiest); default 8.
    top: Option<usize>,
}

/// `GET /api/hosts/{id}/groups?since=...&top=N`: the host's services,
/// containers and process groups, the busiest `top` by CPU and by memory
/// (at the latest point), as columns: `{"t": [...], "cpu_percent": {name:
/// [...]}, "mem_bytes": {name: [...]}, "now": [{name, cpu_percent,
/// mem_bytes}]}`.
pub async fn groups(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<GroupsQuery>,
) -> Response {
    let since = match since(q.since.as_deref()) {
        Ok(since) => since,
        Err(e) => return bad_request(e),
    };
    let top = q.top.unwrap_or(8).clamp(1, crate::groups::KEPT);
    let reg = state.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(host) = reg.by_id(&id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no host with id {id:?}") })),
        )
            .into_response();
    };
    let now = crate::view::groups_now(host);
    // The busiest at the latest point; groups not measured yet (a first
    // CPU total has no rate) last, but shown.
    let busiest = |key: fn(&crate::view::GroupNow) -> Option<f32>| {
        let mut names: Vec<&crate::view::GroupNow> = now.iter().collect();
        let rank = |g: &crate::view::GroupNow| key(g).unwrap_or(-1.0);
        names.sort_by(|a, b| rank(b).partial_cmp(&rank(a)).unwrap_or(std::cmp::Ordering::Equal));
        names.into_iter().take(top).map(|g| g.name.clone()).collect::<Vec<_>>()
    };
    let (by_cpu, by_mem) = (busiest(|g| g.cpu_percent), busiest(|g| g.mem_bytes));
    let points: Vec<_> = host.groups.history.iter().filter(|p| p.t_ms >= since).collect();
    let column = |name: &str, pick: fn(&(u32, f32, f32)) -> f32| -> Value {
        Value::from(
            points
                .iter()
                .map(|p| {
                    p.values
                        .iter()
                        .find(|v| host.groups.name(v.0) == name)
                        .map(pick)
                        .filter(|v| v.is_finite())
                        .map_or(Value::Null, |v| Value::from(f64::from(v)))
                })
                .collect::<Vec<_>>(),
        )
    };
    let cpu: serde_json::Map<String, Value> =
        by_cpu.iter().map(|n| (n.clone(), column(n, |v| v.1))).collect();
    let mem: serde_json::Map<String, Value> =
        by_mem.iter().map(|n| (n.clone(), column(n, |v| v.2))).collect();
    let body = json!({
        "t": points.iter().map(|p| p.t_ms).collect::<Vec<_>>(),
        "cpu_percent": cpu,
        "mem_bytes": mem,
        "now": now,
    });
    drop(reg);
    Json(body).into_response()
}

fn to_sse(event: &Event) -> SseEvent {
    SseEvent::default().id(event.id.to_string()).event(event.kind).data(&*event.data)
}

/// An SSE response of the events of `topic` (`None`: every host's).
pub(super) fn stream(state: &AppState, host: Option<String>, headers: &HeaderMap) -> Response {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let sub = state.hub.subscribe(host, last);
    let mut first = vec![SseEvent::default().retry(Duration::from_secs(1)).comment("curvemon")];
    if sub.reset {
        first.push(SseEvent::default().event("reset").data("{}"));
    }
    first.extend(sub.replay.iter().map(to_sse));
    let live = ReceiverStream::new(sub.events).map(|e| to_sse(&e));
    let events = futures_util::stream::iter(first)
        .chain(live)
        .map(Ok::<_, Infallible>)
        .take_until(state.shutdown.clone().cancelled_owned());
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

/// `GET /api/stream`: every host's events.
pub async fn fleet_stream(State(state): State<AppState>, headers: HeaderMap) -> Response {
    stream(&state, None, &headers)
}

/// `GET /api/hosts/{id}/stream`: one host's events (404 for an unknown id).
pub async fn host_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let known = state
        .registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .by_id(&id)
        .is_some();
    if !known {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no host with id {id:?}") })),
        )
            .into_response();
    }
    stream(&state, Some(id), &headers)
}
