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
    /// Unix milliseconds or RFC 3339; default: an hour ago.
    since: Option<String>,
    /// Unix milliseconds or RFC 3339; default: now.
    until: Option<String>,
    /// At most this many points: more are put in time buckets (average,
    /// minimum and maximum); default 4,000.
    points: Option<usize>,
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

/// `GET /api/hosts/{id}/history?since=...&until=...&points=N&metric=...`:
/// columns of points from the history store, `{"t": [...], "cpu_percent":
/// [...], "cores": [[cpu0...], ...]}`, the shape charting libraries take;
/// bucketed when there are more than `points` (then `step_ms` is the
/// bucket width and `min` and `max` hold each field's extremes), with the
/// losses recorded in the range (`gaps`).
pub async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let (since, until) = match time_range(q.since.as_deref(), q.until.as_deref()) {
        Ok(range) => range,
        Err(e) => return bad_request(e),
    };
    let wanted: Vec<String> = match &q.metric {
        Some(list) => {
            list.split(',').map(str::trim).filter(|m| !m.is_empty()).map(String::from).collect()
        }
        None => FIELDS.iter().copied().chain(["cores"]).map(String::from).collect(),
    };
    if let Some(unknown) = wanted.iter().find(|m| *m != "cores" && !FIELDS.contains(&m.as_str())) {
        return bad_request(format!(
            "unknown metric {unknown:?}; expected some of {}, cores",
            FIELDS.join(", ")
        ));
    }
    let Some(key) = host_key(&id) else { return no_host(&id) };
    let store = std::sync::Arc::clone(&state.store);
    let read = tokio::task::spawn_blocking(move || {
        let points = store.points(&key, since, until)?;
        let gaps = store.gaps(&key, since.saturating_sub(86_400_000), until)?;
        Ok::<_, crate::store::StoreError>((points, gaps))
    })
    .await;
    let (points, gaps) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => return unavailable(&e),
        Err(e) => return unavailable(&e),
    };
    let series =
        crate::store::query::bucket(&points.items, since, until, q.points.unwrap_or(4_000));
    let column = |col: &[Option<f32>]| {
        Value::from(
            col.iter()
                .map(|v| v.map_or(Value::Null, |v| Value::from(f64::from(v))))
                .collect::<Vec<_>>(),
        )
    };
    let mut out = BTreeMap::new();
    out.insert("t".to_string(), Value::from(series.t.clone()));
    let (mut min, mut max) = (serde_json::Map::new(), serde_json::Map::new());
    for name in &wanted {
        if name == "cores" {
            out.insert(
                "cores".into(),
                Value::from(series.cores.iter().map(|c| column(c)).collect::<Vec<_>>()),
            );
        } else if let Some(i) = FIELDS.iter().position(|f| f == name) {
            out.insert(name.clone(), column(&series.avg[i]));
            if series.step_ms > 0 {
                min.insert(name.clone(), column(&series.min[i]));
                max.insert(name.clone(), column(&series.max[i]));
            }
        }
    }
    if series.step_ms > 0 {
        out.insert("step_ms".into(), Value::from(series.step_ms));
        out.insert("min".into(), Value::Object(min));
        out.insert("max".into(), Value::Object(max));
    }
    let gaps: Vec<Value> = gaps
        .into_iter()
        .filter(|g| g.gap.to_ms >= since)
        .map(|g| json!({ "from_ms": g.gap.from_ms, "to_ms": g.gap.to_ms, "from_seq": g.gap.from_seq, "to_seq": g.gap.to_seq, "samples": g.lost, "reason": g.gap.reason.as_str() }))
        .collect();
    out.insert("gaps".into(), Value::from(gaps));
    if points.damaged > 0 {
        out.insert("damaged".into(), Value::from(points.damaged));
    }
    Json(out).into_response()
}

/// `since` and `until` as Unix ms (default: the last hour).
fn time_range(since: Option<&str>, until: Option<&str>) -> Result<(u64, u64), String> {
    let now = crate::time::now_ms();
    let since = since.map(parse_since).transpose()?;
    let until = until.map(parse_since).transpose()?;
    Ok((since.unwrap_or(now.saturating_sub(3_600_000)), until.unwrap_or(now)))
}

/// Query of `GET /api/hosts/{id}/samples`.
#[derive(Debug, Deserialize)]
pub struct SamplesQuery {
    /// Unix milliseconds or RFC 3339; default: an hour ago.
    since: Option<String>,
    /// Unix milliseconds or RFC 3339; default: now.
    until: Option<String>,
    /// Series to include by index in the sample's schema (optional).
    value: Option<usize>,
}

/// `GET /api/hosts/{id}/samples?since=&until=&value=I`: the stored samples
/// themselves, in time order: `epoch`, `seq` and `t` columns (and the
/// `value` of series I), so that what was stored can be checked against
/// what was taken.
pub async fn samples(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SamplesQuery>,
) -> Response {
    let (since, until) = match time_range(q.since.as_deref(), q.until.as_deref()) {
        Ok(range) => range,
        Err(e) => return bad_request(e),
    };
    let Some(key) = host_key(&id) else { return no_host(&id) };
    let store = std::sync::Arc::clone(&state.store);
    let read = match tokio::task::spawn_blocking(move || store.samples(&key, since, until)).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => return unavailable(&e),
        Err(e) => return unavailable(&e),
    };
    let mut out = serde_json::Map::new();
    out.insert("epoch".into(), Value::from(read.items.iter().map(|s| s.epoch).collect::<Vec<_>>()));
    out.insert("seq".into(), Value::from(read.items.iter().map(|s| s.seq).collect::<Vec<_>>()));
    out.insert("t".into(), Value::from(read.items.iter().map(|s| s.t_ms).collect::<Vec<_>>()));
    if let Some(i) = q.value {
        let values: Vec<Value> = read
            .items
            .iter()
            .map(|s| {
                s.values.get(i).filter(|v| v.is_finite()).map_or(Value::Null, |v| Value::from(*v))
            })
            .collect();
        out.insert("value".into(), Value::from(values));
    }
    out.insert("damaged".into(), Value::from(read.damaged));
    Json(Value::Object(out)).into_response()
}

/// A host's id is its key (so hosts the store knows from before a restart
/// are found too).
fn host_key(id: &str) -> Option<curvemon_keys::PublicKey> {
    curvemon_keys::PublicKey::from_hex(id)
}

fn no_host(id: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no host with id {id:?}") })))
        .into_response()
}

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "Cannot read the history store.");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": format!("the history store cannot be read: {e}") })),
    )
        .into_response()
}

/// The longest history of groups one request derives (from the store).
const GROUPS_SPAN_MS: u64 = 24 * 3_600_000;

/// Query of `GET /api/hosts/{id}/groups`.
#[derive(Debug, Deserialize)]
pub struct GroupsQuery {
    /// Unix milliseconds or RFC 3339; default (and at most): a day ago.
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
    let (key, now) = {
        let reg = state.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(host) = reg.by_id(&id) else { return no_host(&id) };
        (host.key, crate::view::groups_now(host))
    };
    // The busiest at the latest point; groups not measured yet (a first
    // CPU total has no rate) last, but shown.
    let busiest = |key: fn(&crate::view::GroupNow) -> Option<f32>| {
        let mut names: Vec<&crate::view::GroupNow> = now.iter().collect();
        let rank = |g: &crate::view::GroupNow| key(g).unwrap_or(-1.0);
        names.sort_by(|a, b| rank(b).partial_cmp(&rank(a)).unwrap_or(std::cmp::Ordering::Equal));
        names.into_iter().take(top).map(|g| g.name.clone()).collect::<Vec<_>>()
    };
    let (by_cpu, by_mem) = (busiest(|g| g.cpu_percent), busiest(|g| g.mem_bytes));
    // The history is derived from the stored samples, off the async
    // workers and without the registry's lock.
    let store = std::sync::Arc::clone(&state.store);
    let since = since.max(crate::time::now_ms().saturating_sub(GROUPS_SPAN_MS));
    let history = tokio::task::spawn_blocking(move || {
        crate::groups::from_store(&*store, &key, since, crate::time::now_ms())
    })
    .await;
    let (groups, points) = match history {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return unavailable(&e),
        Err(e) => return unavailable(&e),
    };
    let column = |name: &str, pick: fn(&(u32, f32, f32)) -> f32| -> Value {
        Value::from(
            points
                .iter()
                .map(|p| {
                    p.values
                        .iter()
                        .find(|v| groups.name(v.0) == name)
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
