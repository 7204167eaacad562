//! Availability checks of every host: what each agent declared
//! ([`Checks`](curvemon_protocol::Checks)), each check's last result, its
//! state and since when, and an hour of its durations for the chart.
//!
//! A check is known by its host and name: the agent's ids change with
//! every declaration (a restarted agent), so state carries over by name. A
//! state change (up → down and back) is logged with host, check and
//! reason, and queued for the live streams.
//!
//! Layout: this module keeps the state; [`view`] serves it as JSON and
//! events; [`expose`] as Prometheus series.

pub mod expose;
pub mod view;

use std::collections::{HashMap, VecDeque};

use curvemon_keys::PublicKey;
use curvemon_protocol::{CheckResult, CheckResults, CheckSpec, Checks as Declaration, ModelError};
use serde::Serialize;
use tracing::{debug, info, warn};

/// How much of each check's history is kept.
pub const HISTORY_MS: u64 = 3_600_000;
/// And at most this many points (a check every second for an hour).
const HISTORY_POINTS: usize = 3_600;

/// One result, for the chart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// When the run started (Unix milliseconds).
    pub t_ms: u64,
    /// How long it took.
    pub seconds: f64,
    /// Whether it passed.
    pub up: bool,
}

/// One check of one host.
#[derive(Debug, Clone)]
pub struct CheckState {
    /// As the agent declared it (its id is the latest declaration's).
    pub spec: CheckSpec,
    /// The latest result.
    pub last: Option<CheckResult>,
    /// When the current state (passing or failing) began (Unix ms).
    pub since_ms: Option<u64>,
    /// Recent results.
    pub history: VecDeque<Point>,
    /// Runs reported, in all.
    pub runs: u64,
    /// Failed runs, in all.
    pub failures: u64,
}

impl CheckState {
    /// Whether the latest result passed (`None` before the first).
    pub fn up(&self) -> Option<bool> {
        self.last.as_ref().map(|r| r.failure.is_none())
    }
}

/// The checks of one host, in the agent's order.
#[derive(Debug, Default)]
pub struct HostChecks {
    /// Every declared check.
    pub checks: Vec<CheckState>,
    by_id: HashMap<u32, usize>,
}

/// A check whose state changed or which has a new result, for the streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The host's key.
    pub host: PublicKey,
    /// The check's position in [`HostChecks::checks`].
    pub index: usize,
}

/// Counters of what was refused, for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckCounters {
    /// Results taken.
    pub results: u64,
    /// Results naming a check the host never declared (dropped).
    pub unknown: u64,
    /// Up → down and down → up changes.
    pub transitions: u64,
}

/// Every host's checks.
#[derive(Debug, Default)]
pub struct Checks {
    hosts: HashMap<PublicKey, HostChecks>,
    updates: Vec<Update>,
    /// What was taken and refused.
    pub counters: CheckCounters,
}

impl Checks {
    /// Takes a host's declaration: checks of the same name keep their
    /// state; others are forgotten.
    ///
    /// # Errors
    /// The declaration breaks a rule of [`curvemon_protocol::validate`].
    pub fn declare(&mut self, host: PublicKey, declaration: Declaration) -> Result<(), ModelError> {
        curvemon_protocol::validate::checks(&declaration)?;
        let entry = self.hosts.entry(host).or_default();
        let mut old: HashMap<String, CheckState> =
            entry.checks.drain(..).map(|c| (c.spec.name.clone(), c)).collect();
        entry.by_id.clear();
        for (index, spec) in declaration.checks.into_iter().enumerate() {
            entry.by_id.insert(spec.id, index);
            let state = match old.remove(&spec.name) {
                Some(mut kept) if kept.spec.kind == spec.kind => {
                    kept.spec = spec;
                    kept
                }
                _ => CheckState {
                    spec,
                    last: None,
                    since_ms: None,
                    history: VecDeque::new(),
                    runs: 0,
                    failures: 0,
                },
            };
            entry.checks.push(state);
        }
        Ok(())
    }

    /// Takes results from `host` (shown as `hostname` in logs).
    ///
    /// # Errors
    /// The message breaks a rule of [`curvemon_protocol::validate`]; results
    /// of undeclared checks are counted and dropped, not an error.
    pub fn results(
        &mut self,
        host: PublicKey,
        hostname: &str,
        message: CheckResults,
    ) -> Result<(), ModelError> {
        curvemon_protocol::validate::check_results(&message)?;
        let Some(entry) = self.hosts.get_mut(&host) else {
            self.counters.unknown += message.results.len() as u64;
            debug!(host = hostname, "Check results before any declaration; dropped.");
            return Ok(());
        };
        for result in message.results {
            let Some(&index) = entry.by_id.get(&result.id) else {
                self.counters.unknown += 1;
                warn!(
                    host = hostname,
                    id = result.id,
                    "A result of a check the agent never declared; dropped."
                );
                continue;
            };
            self.counters.results += 1;
            let state = &mut entry.checks[index];
            let up = result.failure.is_none();
            let before = state.up();
            if before != Some(up) {
                let went_down = state.since_ms.unwrap_or(result.started_at_ms);
                state.since_ms = Some(result.started_at_ms);
                let spec = &state.spec;
                match (&result.failure, before) {
                    (Some(f), _) => {
                        if before.is_some() {
                            self.counters.transitions += 1;
                        }
                        warn!(host = hostname, check = %spec.name, kind = spec.kind.as_str(), target = %spec.target, reason = f.reason.as_str(), detail = %f.detail, "Check down.");
                    }
                    (None, Some(false)) => {
                        self.counters.transitions += 1;
                        let down_ms = result.started_at_ms.saturating_sub(went_down);
                        info!(host = hostname, check = %spec.name, kind = spec.kind.as_str(), target = %spec.target, down_for_s = down_ms / 1000, "Check up again.");
                    }
                    (None, _) => debug!(host = hostname, check = %spec.name, "Check up."),
                }
            }
            state.runs += 1;
            state.failures += u64::from(!up);
            state.history.push_back(Point {
                t_ms: result.started_at_ms,
                seconds: result.seconds,
                up,
            });
            let oldest = result.started_at_ms.saturating_sub(HISTORY_MS);
            while state.history.front().is_some_and(|p| p.t_ms < oldest)
                || state.history.len() > HISTORY_POINTS
            {
                state.history.pop_front();
            }
            state.last = Some(result);
            self.updates.push(Update { host, index });
        }
        Ok(())
    }

    /// Forgets a host (its name went to another key).
    pub fn forget(&mut self, host: &PublicKey) {
        self.hosts.remove(host);
    }

    /// The checks of `host`.
    pub fn host(&self, host: &PublicKey) -> Option<&HostChecks> {
        self.hosts.get(host)
    }

    /// Every host's checks.
    pub fn hosts(&self) -> impl Iterator<Item = (&PublicKey, &HostChecks)> {
        self.hosts.iter()
    }

    /// The updates since the last call.
    pub fn drain_updates(&mut self) -> Vec<Update> {
        std::mem::take(&mut self.updates)
    }
}

#[cfg(test)]
mod tests {
    use curvemon_protocol::{CheckFailure, CheckKind, FailureReason};

    use super::*;

    fn spec(id: u32, name: &str) -> CheckSpec {
        CheckSpec {
            id,
            name: name.into(),
            kind: CheckKind::Redis,
            target: "127.0.0.1:6379".into(),
            interval_ms: 10_000,
            timeout_ms: 2_000,
        }
    }

    fn result(id: u32, t: u64, failure: Option<FailureReason>) -> CheckResult {
        CheckResult {
            id,
            started_at_ms: t,
            seconds: 0.001,
            failure: failure.map(|reason| CheckFailure { reason, detail: "x".into() }),
            phases: vec![],
            http_status: None,
            cert_not_after: None,
            server: String::new(),
        }
    }

    #[test]
    fn state_since_and_carried_over_by_name() {
        let key = PublicKey::from_bytes([1; 32]);
        let mut checks = Checks::default();
        checks.declare(key, Declaration { checks: vec![spec(0, "cache"), spec(1, "db")] }).unwrap();
        let results = |r| CheckResults { results: r };
        checks.results(key, "h", results(vec![result(0, 1_000, None)])).unwrap();
        checks.results(key, "h", results(vec![result(0, 2_000, None)])).unwrap();
        checks
            .results(key, "h", results(vec![result(0, 3_000, Some(FailureReason::Refused))]))
            .unwrap();
        let cache = &checks.host(&key).unwrap().checks[0];
        assert_eq!(
            (cache.up(), cache.since_ms, cache.runs, cache.failures),
            (Some(false), Some(3_000), 3, 1)
        );
        assert_eq!(checks.counters.transitions, 1);

        // A restarted agent numbers them differently; state follows names.
        checks.declare(key, Declaration { checks: vec![spec(7, "cache")] }).unwrap();
        checks
            .results(key, "h", results(vec![result(7, 4_000, None), result(1, 4_000, None)]))
            .unwrap();
        let host = checks.host(&key).unwrap();
        assert_eq!(host.checks.len(), 1);
        assert_eq!(
            (host.checks[0].up(), host.checks[0].since_ms, host.checks[0].runs),
            (Some(true), Some(4_000), 4)
        );
        assert_eq!(checks.counters.unknown, 1);
        assert_eq!(checks.counters.transitions, 2);
        // Four results taken (the undeclared one is not an update).
        assert_eq!(checks.drain_updates().len(), 4);
    }

    #[test]
    fn history_keeps_an_hour() {
        let key = PublicKey::from_bytes([2; 32]);
        let mut checks = Checks::default();
        checks.declare(key, Declaration { checks: vec![spec(0, "x")] }).unwrap();
        for t in 0..200u64 {
            checks
                .results(key, "h", CheckResults { results: vec![result(0, t * 60_000, None)] })
                .unwrap();
        }
        let history = &checks.host(&key).unwrap().checks[0].history;
        assert_eq!(history.len(), 61);
        assert_eq!(history.front().unwrap().t_ms, 139 * 60_000);
    }

    #[test]
    fn bad_declarations_are_refused() {
        let key = PublicKey::from_bytes([3; 32]);
        let mut checks = Checks::default();
        assert!(
            checks.declare(key, Declaration { checks: vec![spec(0, "a"), spec(0, "b")] }).is_err()
        );
        assert!(checks.declare(key, Declaration { checks: vec![spec(0, "a b")] }).is_err());
        let mut bad = result(0, 1, None);
        bad.seconds = f64::NAN;
        checks.declare(key, Declaration { checks: vec![spec(0, "a")] }).unwrap();
        assert!(checks.results(key, "h", CheckResults { results: vec![bad] }).is_err());
    }
}
