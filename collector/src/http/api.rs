//! The JSON API: `/api/hosts`, `/api/hosts/{id}`, `/api/stats`, `/healthz`.
//! Views are built from the registry under its lock and serialized after.

use std::time::SystemTime;

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::AppState;
use crate::{
    derive::Latest,
    registry::{Host, Registry, RegistryCounters, State as Liveness},
    stats::StatsSnapshot,
};

/// One host as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    /// Hex of the agent's public key: stable across reconnects, URL-safe.
    pub id: String,
    /// The host's name.
    pub hostname: String,
    /// "up", "stale" or "down".
    pub state: Liveness,
    /// When the current state began (RFC 3339).
    pub state_since: Option<String>,
    /// Why the host is in its current state.
    pub state_reason: Option<String>,
    /// Last valid message (RFC 3339).
    pub last_seen: String,
    /// The agent's key, as in its certificate (Z85).
    pub public_key: String,
    /// The agent's TCP address.
    pub address: String,
    /// The agent's sampling interval.
    pub interval_seconds: f64,
    /// Seconds after which the host counts as stale, and as down.
    pub stale_after_seconds: f64,
    /// Seconds after which the host counts as down.
    pub down_after_seconds: f64,
    /// Metrics messages that never arrived.
    pub missed_samples: u64,
    /// Inventory, once the model has arrived.
    pub model: Option<ModelView>,
    /// Latest values, once metrics have arrived.
    pub latest: Option<Latest>,
    /// Recent state changes, oldest first.
    pub transitions: Vec<TransitionView>,
}

/// The model, in API units.
#[derive(Debug, Clone, Serialize)]
pub struct ModelView {
    /// `MemTotal` in bytes.
    pub mem_total_bytes: u64,
    /// `SwapTotal` in bytes.
    pub swap_total_bytes: u64,
    /// CPUs.
    pub cpu_count: u32,
    /// CPU model name.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// OS pretty name.
    pub os: String,
    /// Boot time (RFC 3339).
    pub boot_time: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// Boot id.
    pub boot_id: String,
    /// Agent version.
    pub agent_version: String,
    /// Schema revision (hex).
    pub schema_revision: String,
    /// Number of series per metrics message.
    pub series: usize,
}

/// One state change.
#[derive(Debug, Clone, Serialize)]
pub struct TransitionView {
    /// When (RFC 3339).
    pub at: String,
    /// Previous state, absent for the first appearance.
    pub from: Option<Liveness>,
    /// New state.
    pub to: Liveness,
    /// Why.
    pub reason: String,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl HostView {
    fn new(host: &Host, registry: &Registry) -> Option<Self> {
        // A host that has sent metrics but neither hello nor model (just
        // after a collector restart) has no name yet and is not listed.
        let hostname = host.hostname.clone()?;
        let (stale, down) = registry.windows(host);
        let current = host.current_transition();
        Some(HostView {
            id: host.id.clone(),
            hostname,
            state: host.state,
            state_since: current.map(|t| rfc3339(t.at)),
            state_reason: current.map(|t| t.reason.clone()),
            last_seen: rfc3339(host.last_seen_wall),
            public_key: host.key.to_z85(),
            address: host.address.clone(),
            interval_seconds: host.interval.as_secs_f64(),
            stale_after_seconds: stale.as_secs_f64(),
            down_after_seconds: down.as_secs_f64(),
            missed_samples: host.missed,
            model: host.model.as_ref().map(|m| ModelView {
                mem_total_bytes: m.mem_total_bytes,
                swap_total_bytes: m.swap_total_bytes,
                cpu_count: m.cpu_count,
                cpu_model: m.cpu_model.clone(),
                kernel: m.kernel.clone(),
                os: m.os.clone(),
                boot_time: rfc3339(
                    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(m.boot_time_unix),
                ),
                machine_id: m.machine_id.clone(),
                boot_id: m.boot_id.clone(),
                agent_version: m.agent_version.clone(),
                schema_revision: format!("{:016x}", m.schema.revision),
                series: m.schema.series_count(),
            }),
            latest: host.latest.clone(),
            transitions: host
                .transitions
                .iter()
                .map(|t| TransitionView {
                    at: rfc3339(t.at),
                    from: t.from,
                    to: t.to,
                    reason: t.reason.clone(),
                })
                .collect(),
        })
    }
}

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
    let mut views: Vec<HostView> = reg.hosts().filter_map(|h| HostView::new(h, &reg)).collect();
    drop(reg);
    views.sort_by(|a, b| a.hostname.cmp(&b.hostname).then_with(|| a.id.cmp(&b.id)));
    Json(views)
}

/// `GET /api/hosts/{id}`: one host, or 404 with a JSON error.
pub async fn host(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let reg = registry(&state);
    match reg.by_id(&id).and_then(|h| HostView::new(h, &reg)) {
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
    })
}

/// `GET /metrics`: every host's series and the collector's own, in the
/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let stats = state.stats.snapshot();
    let rendered = {
        let reg = registry(&state);
        crate::exposition::render(&reg, &stats)
    };
    match rendered {
        Ok(text) => {
            ([(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode metrics: {e}\n"))
            .into_response(),
    }
}
