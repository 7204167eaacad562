//! Checks in the Prometheus exposition, for every host that is up or stale
//! and every check with a result, labelled `host`, `check`, `kind` and
//! `target`:
//! - `curvemon_check_up` 1 or 0;
//! - `curvemon_check_failure{reason}` 1 for the reason of a failing check
//!   (absent while it passes), so `reason` stays one of eight words;
//! - `curvemon_check_duration_seconds{phase}`: `total`, and each phase the
//!   run went through (`dns`, `connect`, `tls`, `first_byte`);
//! - `curvemon_check_http_status_code`,
//!   `curvemon_check_tls_cert_expiry_timestamp_seconds`,
//!   `curvemon_check_last_run_timestamp_seconds`;
//! - `curvemon_check_info{server}` where the service names itself.

use prometheus::proto::{LabelPair, MetricType};

use crate::{
    exposition::{Families, label},
    registry::{Registry, State},
};

/// Adds every check's series to `out`.
pub(crate) fn series(registry: &Registry, out: &mut Families) {
    let mut hosts: Vec<_> = registry
        .checks
        .hosts()
        .filter_map(|(key, checks)| Some((registry.get(key)?, checks)))
        .filter(|(host, _)| host.state != State::Down)
        .filter_map(|(host, checks)| Some((host.hostname.as_deref()?, checks)))
        .collect();
    hosts.sort_by(|a, b| a.0.cmp(b.0));
    let g = MetricType::GAUGE;
    for (hostname, checks) in hosts {
        for check in &checks.checks {
            let Some(last) = &check.last else { continue };
            let spec = &check.spec;
            let labels = |extra: &[(&str, &str)]| -> Vec<LabelPair> {
                let mut pairs = vec![
                    label("host", hostname),
                    label("check", &spec.name),
                    label("kind", spec.kind.as_str()),
                    label("target", &spec.target),
                ];
                pairs.extend(extra.iter().map(|(k, v)| label(k, v)));
                pairs
            };
            out.add(
                "curvemon_check_up",
                "1 when the check's last run passed, 0 when it failed.",
                g,
                labels(&[]),
                f64::from(u8::from(last.failure.is_none())),
            );
            if let Some(failure) = &last.failure {
                out.add(
                    "curvemon_check_failure",
                    "1 for the reason a failing check fails (refused, timeout, dns, tls, auth, protocol, status, body).",
                    g,
                    labels(&[("reason", failure.reason.as_str())]),
                    1.0,
                );
            }
            let help =
                "How long the check's last run took: in all (phase=\"total\") and per phase.";
            out.add(
                "curvemon_check_duration_seconds",
                help,
                g,
                labels(&[("phase", "total")]),
                last.seconds,
            );
            for phase in &last.phases {
                out.add(
                    "curvemon_check_duration_seconds",
                    help,
                    g,
                    labels(&[("phase", phase.phase.as_str())]),
                    phase.seconds,
                );
            }
            if let Some(status) = last.http_status {
                out.add(
                    "curvemon_check_http_status_code",
                    "The HTTP status of the check's last run.",
                    g,
                    labels(&[]),
                    f64::from(status),
                );
            }
            if let Some(expiry) = last.cert_not_after {
                out.add(
                    "curvemon_check_tls_cert_expiry_timestamp_seconds",
                    "When the checked server's certificate expires, Unix time.",
                    g,
                    labels(&[]),
                    expiry as f64,
                );
            }
            out.add(
                "curvemon_check_last_run_timestamp_seconds",
                "When the check's last run started, Unix time.",
                g,
                labels(&[]),
                last.started_at_ms as f64 / 1000.0,
            );
            if !last.server.is_empty() {
                out.add(
                    "curvemon_check_info",
                    "What the checked service says of itself (version, role); always 1.",
                    g,
                    labels(&[("server", &last.server)]),
                    1.0,
                );
            }
        }
    }
    let counters = &registry.checks.counters;
    let c = MetricType::COUNTER;
    out.add(
        "curvemon_collector_check_results_total",
        "Check results taken from agents.",
        c,
        vec![],
        counters.results as f64,
    );
    out.add(
        "curvemon_collector_check_results_unknown_total",
        "Check results naming a check their agent never declared (dropped).",
        c,
        vec![],
        counters.unknown as f64,
    );
    out.add(
        "curvemon_collector_check_transitions_total",
        "Checks that went from passing to failing or back.",
        c,
        vec![],
        counters.transitions as f64,
    );
}
