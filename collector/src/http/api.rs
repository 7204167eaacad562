//! The JSON API: `/api/hosts`, `/api/hosts/{id}`, `/api/stats`, `/healthz`.
//! Views are built from the registry under its lock and serialized after.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::AppState;
use crate::{
    export::text::{Rest, Snapshot},
    registry::{Registry, RegistryCounters, State as Liveness},
    stats::StatsSnapshot,
    view::HostView,
};

fn registry(state: &AppState) -> std::sync::MutexGuard<'_, Registry> {
    state.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `GET /healthz`: 200 while the process serves HTTP.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /api/hosts`: every named host, sorted by name.
pub async fn hosts(State(state): State<AppState>) -> Json<Vec<HostView>> {
    let reg = registry(&state);
    let mut views: Vec<HostView> =
        reg.hosts().filter_map(|h| HostView::new(h, &reg, true)).collect();
    drop(reg);
    views.sort_by(|a, b| a.hostname.cmp(&b.hostname).then_with(|| a.id.cmp(&b.id)));
    Json(views)
}

/// `GET /api/hosts/{id}`: one host, or 404 with a JSON error.
pub async fn host(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let reg = registry(&state);
    match reg.by_id(&id).and_then(|h| HostView::new(h, &reg, true)) {
        Some(view) => Json(view).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("no host with id {id:?}") })),
        )
            .into_response(),
    }
}

/// The collector's counters.
#[derive(Debug, Serialize)]
pub struct StatsView {
    /// Socket counters.
    #[serde(flatten)]
    pub socket: StatsSnapshot,
    /// Registry counters.
    #[serde(flatten)]
    pub registry: RegistryCounters,
    /// Hosts per state.
    pub hosts_up: usize,
    /// Hosts per state.
    pub hosts_stale: usize,
    /// Hosts per state.
    pub hosts_down: usize,
    /// The history store's counters.
    pub store: StoreView,
}

/// The history store's counters, as `/api/stats` shows them.
#[derive(Debug, Serialize)]
pub struct StoreView {
    /// Samples written.
    pub samples: u64,
    /// Samples dropped as already stored.
    pub duplicates: u64,
    /// Transactions that failed.
    pub errors: u64,
    /// Bytes of samples held.
    pub bytes: u64,
    /// Samples reported lost, by reason.
    pub lost: std::collections::BTreeMap<&'static str, u64>,
}

impl StoreView {
    fn new(s: &crate::store::writer::StoreStats) -> StoreView {
        use std::sync::atomic::Ordering::Relaxed;
        StoreView {
            samples: s.stored.load(Relaxed),
            duplicates: s.duplicates.load(Relaxed),
            errors: s.errors.load(Relaxed),
            bytes: s.bytes.load(Relaxed),
            lost: crate::store::writer::REASONS
                .iter()
                .zip(&s.lost)
                .filter(|(r, _)| crate::store::counts_as_lost(**r))
                .map(|(r, n)| (r.as_str(), n.load(Relaxed)))
                .collect(),
        }
    }
}

/// `GET /api/stats`: counters of what the collector received and refused.
pub async fn stats(State(state): State<AppState>) -> Json<StatsView> {
    let reg = registry(&state);
    let count = |s| reg.hosts().filter(|h| h.state == s).count();
    Json(StatsView {
        socket: state.stats.snapshot(),
        registry: reg.counters,
        hosts_up: count(Liveness::Up),
        hosts_stale: count(Liveness::Stale),
        hosts_down: count(Liveness::Down),
        store: StoreView::new(&state.store_stats),
    })
}

/// `GET /metrics`: every host's series and the collector's own, in the
/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let stats = state.stats.snapshot();
    let streams = crate::exposition::StreamStats {
        clients: state.hub.clients(),
        published: state.hub.published.load(std::sync::atomic::Ordering::Relaxed),
        dropped: state.hub.dropped.load(std::sync::atomic::Ordering::Relaxed),
    };
    // Under the lock: a snapshot of pointers and the small families; the
    // hosts' series are written after, on a blocking thread, in chunks.
    let (snapshot, rest, tail) = {
        let reg = registry(&state);
        let snapshot = Snapshot::take(&reg);
        let names = snapshot.family_names();
        let (rest, tail) = crate::exposition::gather(
            &reg,
            &stats,
            streams,
            &state.store_stats,
            &state.exports,
            names,
        );
        (snapshot, rest, tail)
    };
    let rest = match Rest::encode(rest, tail) {
        Ok(rest) => rest,
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode metrics: {e}\n"))
                .into_response();
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::convert::Infallible>>(4);
    tokio::task::spawn_blocking(move || {
        crate::export::text::render(&snapshot, rest, |chunk| tx.blocking_send(Ok(chunk)).is_ok());
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    ([(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response()
}
