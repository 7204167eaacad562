//! What the API and the event stream show of a host: the views built from
//! the registry under its lock, serialised after.

use serde::Serialize;

use crate::{
    derive::Latest,
    history::{FIELDS, Point},
    registry::{Change, Host, Registry, State as Liveness},
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
    /// The numbers of the CPUs per-core values are given for, in that order
    /// (offline CPUs leave holes: `[0, 1, 3]`).
    pub cpus: Vec<u32>,
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

use crate::time::rfc3339;

impl HostView {
    /// The view of `host`, or `None` while it has no name yet; the
    /// transitions list is left empty unless asked for.
    pub fn new(host: &Host, registry: &Registry, with_transitions: bool) -> Option<Self> {
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
                cpus: host.layout().map(|l| l.cpus().to_vec()).unwrap_or_default(),
                cpu_model: m.cpu_model.clone(),
                kernel: m.kernel.clone(),
                os: m.os.clone(),
                boot_time: rfc3339(crate::time::from_unix_secs(m.boot_time_unix)),
                machine_id: m.machine_id.clone(),
                boot_id: m.boot_id.clone(),
                agent_version: m.agent_version.clone(),
                schema_revision: format!("{:016x}", m.schema.revision),
                series: host.schema().map_or(0, curvemon_protocol::Schema::series_count),
            }),
            latest: host.latest.clone(),
            transitions: host
                .transitions
                .iter()
                .filter(|_| with_transitions)
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

/// A history point as JSON: time and the dashboard's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct PointView {
    /// When the agent took the sample, Unix milliseconds.
    pub t: u64,
    /// Values by [`FIELDS`] name; null where unknown.
    #[serde(flatten)]
    pub fields: std::collections::BTreeMap<&'static str, Option<f32>>,
    /// Busy percent per CPU.
    pub cores: Vec<Option<f32>>,
}

fn finite(v: f32) -> Option<f32> {
    v.is_finite().then_some(v)
}

impl From<&Point> for PointView {
    fn from(p: &Point) -> Self {
        PointView {
            t: p.t_ms,
            fields: FIELDS.iter().zip(p.fields).map(|(name, v)| (*name, finite(v))).collect(),
            cores: p.cores.iter().map(|v| finite(*v)).collect(),
        }
    }
}

/// One event for the live streams: which host, what kind, the JSON data.
#[derive(Debug, Clone)]
pub struct EventData {
    /// The host's id.
    pub host: String,
    /// `sample` (new values) or `state` (liveness changed).
    pub kind: &'static str,
    /// The event's JSON.
    pub json: String,
}

#[derive(Serialize)]
struct SampleEvent<'a> {
    host: &'a HostView,
    point: Option<PointView>,
    /// Services and groups, when this sample read them anew.
    groups: Option<Vec<GroupNow>>,
}

/// One service, container or process group now.
#[derive(Debug, Clone, Serialize)]
pub struct GroupNow {
    /// `nginx.service`, `docker-4f2a.scope`, `group:NAME`.
    pub name: String,
    /// CPU busy percent of one core.
    pub cpu_percent: Option<f32>,
    /// Memory bytes.
    pub mem_bytes: Option<f32>,
}

/// The groups of `host`'s latest group point.
pub fn groups_now(host: &Host) -> Vec<GroupNow> {
    host.groups
        .history
        .back()
        .map(|p| {
            p.values
                .iter()
                .map(|(id, cpu, mem)| GroupNow {
                    name: host.groups.name(*id).to_string(),
                    cpu_percent: finite(*cpu),
                    mem_bytes: finite(*mem),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Turns a registry change into a stream event.
pub fn event(registry: &Registry, change: &Change) -> Option<EventData> {
    let (id, kind) = match change {
        Change::Sample(id) => (id, "sample"),
        Change::State(id) => (id, "state"),
    };
    let host = registry.by_id(id)?;
    let view = HostView::new(host, registry, false)?;
    let last = (kind == "sample").then_some(host.last_point.as_ref()).flatten();
    let point = last.map(PointView::from);
    let fresh = last.is_some_and(|p| host.groups.history.back().is_some_and(|g| g.t_ms == p.t_ms));
    let groups = fresh.then(|| groups_now(host));
    let json = serde_json::to_string(&SampleEvent { host: &view, point, groups }).ok()?;
    Some(EventData { host: id.clone(), kind, json })
}
