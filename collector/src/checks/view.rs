//! What the API and the live streams show of checks: built under the
//! registry's lock, serialised after.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{CheckState, Point};
use crate::registry::{Host, Registry, State};

/// One check, now.
#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    /// `host-id/check`: stable, safe in a URL.
    pub key: String,
    /// The host's id.
    pub host_id: String,
    /// The host's name.
    pub host: String,
    /// The check's name.
    pub name: String,
    /// `http`, `tcp`, `postgres`, `redis`, `amqp`.
    pub kind: &'static str,
    /// What it probes.
    pub target: String,
    /// Seconds between runs.
    pub interval_seconds: f64,
    /// Seconds one run may take.
    pub timeout_seconds: f64,
    /// `up`, `down`, `pending` (no result yet), `stale` (no result for
    /// two intervals and a timeout) or `unknown` (its host is not up, so
    /// its last result may be old).
    pub state: &'static str,
    /// Why it failed, when down (`refused`, `timeout`, `dns`, `tls`,
    /// `auth`, `protocol`, `status`, `body`).
    pub reason: Option<&'static str>,
    /// The failure in words.
    pub detail: Option<String>,
    /// When the current state (passing or failing) began, Unix ms.
    pub since_ms: Option<u64>,
    /// When the last run started, Unix ms.
    pub last_ms: Option<u64>,
    /// How long the last run took.
    pub seconds: Option<f64>,
    /// Its phases (`dns`, `connect`, `tls`, `first_byte`), seconds each.
    pub phases: BTreeMap<&'static str, f64>,
    /// The HTTP status of the last run.
    pub http_status: Option<u16>,
    /// When the server's certificate expires, Unix seconds.
    pub cert_not_after: Option<i64>,
    /// What the server said of itself (version, role).
    pub server: Option<String>,
    /// Runs reported since the collector started.
    pub runs: u64,
    /// Of which failed.
    pub failures: u64,
}

/// The state word of a check of `host`.
fn state_of(host: &Host, check: &CheckState, now_ms: u64) -> &'static str {
    if host.state != State::Up {
        return "unknown";
    }
    let Some(last) = &check.last else { return "pending" };
    let late = 2 * u64::from(check.spec.interval_ms) + u64::from(check.spec.timeout_ms);
    if now_ms.saturating_sub(last.started_at_ms) > late.max(5_000) {
        return "stale";
    }
    if last.failure.is_none() { "up" } else { "down" }
}

/// A check of `host` as the API shows it.
pub fn check_view(host: &Host, check: &CheckState, now_ms: u64) -> CheckView {
    let last = check.last.as_ref();
    let failure = last.and_then(|r| r.failure.as_ref());
    CheckView {
        key: format!("{}/{}", host.id, check.spec.name),
        host_id: host.id.clone(),
        host: host.label(),
        name: check.spec.name.clone(),
        kind: check.spec.kind.as_str(),
        target: check.spec.target.clone(),
        interval_seconds: f64::from(check.spec.interval_ms) / 1000.0,
        timeout_seconds: f64::from(check.spec.timeout_ms) / 1000.0,
        state: state_of(host, check, now_ms),
        reason: failure.map(|f| f.reason.as_str()),
        detail: failure.map(|f| f.detail.clone()),
        since_ms: check.since_ms,
        last_ms: last.map(|r| r.started_at_ms),
        seconds: last.map(|r| r.seconds),
        phases: last
            .map(|r| r.phases.iter().map(|p| (p.phase.as_str(), p.seconds)).collect())
            .unwrap_or_default(),
        http_status: last.and_then(|r| r.http_status),
        cert_not_after: last.and_then(|r| r.cert_not_after),
        server: last.map(|r| r.server.clone()).filter(|s| !s.is_empty()),
        runs: check.runs,
        failures: check.failures,
    }
}

/// Failing first, then the ones in doubt, then passing; by host and name.
fn rank(state: &str) -> u8 {
    match state {
        "down" => 0,
        "stale" => 1,
        "unknown" => 2,
        "pending" => 3,
        _ => 4,
    }
}

/// Every check of the fleet, failing ones first.
pub fn list(registry: &Registry, now_ms: u64) -> Vec<CheckView> {
    let mut out: Vec<CheckView> = registry
        .checks
        .hosts()
        .filter_map(|(key, checks)| Some((registry.get(key)?, checks)))
        .flat_map(|(host, checks)| checks.checks.iter().map(|c| check_view(host, c, now_ms)))
        .collect();
    out.sort_by(|a, b| (rank(a.state), &a.host, &a.name).cmp(&(rank(b.state), &b.host, &b.name)));
    out
}

/// The checks of one host (by id), in its agent's order.
pub fn of_host(registry: &Registry, host_id: &str, now_ms: u64) -> Option<Vec<CheckView>> {
    let host = registry.by_id(host_id)?;
    let checks = registry.checks.host(&host.key);
    Some(checks.map_or_else(Vec::new, |c| {
        c.checks.iter().map(|check| check_view(host, check, now_ms)).collect()
    }))
}

/// A check's recent runs as columns: `{"t": [...], "seconds": [...],
/// "up": [...]}`.
#[derive(Debug, Serialize)]
pub struct History {
    /// Start times, Unix ms.
    pub t: Vec<u64>,
    /// Durations.
    pub seconds: Vec<f64>,
    /// 1 passed, 0 failed.
    pub up: Vec<u8>,
}

/// The history of `host_id`'s check `name` since `since_ms`.
pub fn history(registry: &Registry, host_id: &str, name: &str, since_ms: u64) -> Option<History> {
    let host = registry.by_id(host_id)?;
    let check = registry.checks.host(&host.key)?.checks.iter().find(|c| c.spec.name == name)?;
    let points: Vec<&Point> = check.history.iter().filter(|p| p.t_ms >= since_ms).collect();
    Some(History {
        t: points.iter().map(|p| p.t_ms).collect(),
        seconds: points.iter().map(|p| p.seconds).collect(),
        up: points.iter().map(|p| u8::from(p.up)).collect(),
    })
}

/// The stream topic of a host's checks.
pub fn topic(host_id: &str) -> String {
    format!("check:{host_id}")
}

/// Events for the checks with new results, for topics somebody wants.
pub fn events(
    registry: &mut Registry,
    wanted: impl Fn(&str) -> bool,
) -> Vec<crate::view::EventData> {
    let updates = registry.checks.drain_updates();
    let now_ms = crate::time::now_ms();
    let mut out = Vec::new();
    for update in updates {
        let Some(host) = registry.get(&update.host) else { continue };
        let topic = topic(&host.id);
        if !wanted(&topic) {
            continue;
        }
        let Some(check) =
            registry.checks.host(&update.host).and_then(|c| c.checks.get(update.index))
        else {
            continue;
        };
        if let Ok(json) = serde_json::to_string(&check_view(host, check, now_ms)) {
            out.push(crate::view::EventData { host: topic, kind: "check", json });
        }
    }
    out
}
