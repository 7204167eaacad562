//! What the API and the live streams show of applications: built from the
//! registry under its lock, serialised after.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{InstancePoint, StepPoint, Timer, Total};
use crate::registry::{Host, Registry, State};

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn finite32(v: f32) -> Option<f64> {
    v.is_finite().then_some(f64::from(v))
}

/// One application in the list.
#[derive(Debug, Clone, Serialize)]
pub struct AppSummary {
    /// Its name.
    pub app: String,
    /// Instances known.
    pub instances: usize,
    /// Instances reporting now.
    pub instances_up: usize,
    /// The hosts it runs on, by name.
    pub hosts: Vec<String>,
    /// CPU percent of one core, all instances with a known process.
    pub cpu_percent: Option<f64>,
    /// Resident bytes, all instances with a known process.
    pub rss_bytes: Option<f64>,
    /// Observations per second of its timers (distributions and histograms
    /// named `*_seconds`) in the last closed step.
    pub calls_per_second: Option<f64>,
    /// The slowest such timer's p99 in the last closed step, seconds.
    pub p99: Option<f64>,
}

/// One instance of an application.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    /// `host-id/instance-id`: stable while the agent runs.
    pub key: String,
    /// What charts call it: host name, and the instance name if any.
    pub label: String,
    /// The host's name.
    pub host: String,
    /// The host's id.
    pub host_id: String,
    /// The instance's name (may be empty: the application on that host).
    pub instance: String,
    /// The sender's process, 0 when unknown.
    pub pid: u32,
    /// Its systemd unit or container scope, if known.
    pub unit: String,
    /// How it reports.
    pub source: String,
    /// `up` (reporting), `idle` (its host is up, it sent nothing lately)
    /// or the host's state (`stale`, `down`).
    pub state: &'static str,
    /// Its last point's time (RFC 3339).
    pub last_seen: Option<String>,
    /// CPU percent of one core since its previous point.
    pub cpu_percent: Option<f64>,
    /// Resident bytes.
    pub rss_bytes: Option<f64>,
    /// Timer observations per second since its previous point.
    pub calls_per_second: Option<f64>,
    /// Its timers over the last closed step.
    pub timers: Vec<TimerNow>,
}

/// A timer's numbers over one step.
#[derive(Debug, Clone, Serialize)]
pub struct TimerNow {
    /// `name{labels}`.
    pub key: String,
    /// The series name.
    pub name: String,
    /// Its labels as `a="x",b="y"`.
    pub labels: String,
    /// Observations per second.
    pub calls_per_second: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Observations since the collector started.
    pub count: u64,
    /// Percentiles of every observation since the collector started (for
    /// the merged timers; absent for one instance's).
    pub since_start: Option<Percentiles>,
}

/// Three percentiles of a distribution.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// A counter summed over instances.
#[derive(Debug, Clone, Serialize)]
pub struct CounterView {
    /// `name{labels}`.
    pub key: String,
    /// The series name.
    pub name: String,
    /// Labels.
    pub labels: String,
    /// Sum of the instances' totals since the collector saw them.
    pub total: f64,
}

/// One application.
#[derive(Debug, Clone, Serialize)]
pub struct AppView {
    /// Its name.
    pub app: String,
    /// Seconds per timer step.
    pub step_seconds: f64,
    /// Its instances.
    pub instances: Vec<InstanceView>,
    /// Its timers, merged across instances (last closed step).
    pub timers: Vec<TimerNow>,
    /// Its counters, summed across instances.
    pub counters: Vec<CounterView>,
}

/// Columns of an instance's history.
#[derive(Debug, Clone, Serialize, Default)]
pub struct InstanceColumns {
    /// As [`InstanceView::key`].
    pub key: String,
    /// As [`InstanceView::label`].
    pub label: String,
    /// Unix ms.
    pub t: Vec<u64>,
    /// CPU percent.
    pub cpu_percent: Vec<Option<f64>>,
    /// Resident bytes.
    pub rss_bytes: Vec<Option<f64>>,
    /// Calls per second.
    pub calls_per_second: Vec<Option<f64>>,
}

/// Columns of a timer's steps.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TimerColumns {
    /// As [`TimerNow::key`].
    pub key: String,
    /// The series name.
    pub name: String,
    /// Labels.
    pub labels: String,
    /// Step starts, Unix ms.
    pub t: Vec<u64>,
    /// Calls per second.
    pub calls_per_second: Vec<Option<f64>>,
    /// Medians.
    pub p50: Vec<Option<f64>>,
    /// 90th percentiles.
    pub p90: Vec<Option<f64>>,
    /// 99th percentiles.
    pub p99: Vec<Option<f64>>,
}

/// An application's history since a time.
#[derive(Debug, Clone, Serialize)]
pub struct AppHistory {
    /// Seconds per timer step.
    pub step_seconds: f64,
    /// One per instance.
    pub instances: Vec<InstanceColumns>,
    /// One per timer.
    pub timers: Vec<TimerColumns>,
}

fn timer_key(name: &str, labels: &str) -> String {
    if labels.is_empty() { name.to_string() } else { format!("{name}{{{labels}}}") }
}

fn timer_now(name: &str, labels: &str, timer: &Timer) -> TimerNow {
    let last = timer.history.back();
    TimerNow {
        key: timer_key(name, labels),
        name: name.to_string(),
        labels: labels.to_string(),
        calls_per_second: last.map(|p| p.calls_per_second),
        p50: last.and_then(|p| finite(p.p50)),
        p90: last.and_then(|p| finite(p.p90)),
        p99: last.and_then(|p| finite(p.p99)),
        count: timer.total.count,
        since_start: Some(Percentiles {
            p50: timer.total.quantile(0.5).and_then(finite),
            p90: timer.total.quantile(0.9).and_then(finite),
            p99: timer.total.quantile(0.99).and_then(finite),
        }),
    }
}

/// The instances of `app`, with their hosts, in a stable order.
fn instances<'a>(
    registry: &'a Registry,
    app: &'a str,
) -> Vec<(&'a Host, u32, &'a super::Instance)> {
    let mut out = Vec::new();
    for (key, host_apps) in registry.apps.hosts() {
        let Some(host) = registry.get(key) else { continue };
        if host.hostname.is_none() {
            continue;
        }
        for (id, instance) in &host_apps.instances {
            if instance.decl.app == app {
                out.push((host, *id, instance));
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.0.hostname, &a.2.decl.name, a.1).cmp(&(&b.0.hostname, &b.2.decl.name, b.1))
    });
    out
}

fn label(host: &Host, instance: &super::Instance) -> String {
    let name = host.hostname.as_deref().unwrap_or("?");
    if instance.decl.name.is_empty() {
        name.to_string()
    } else {
        format!("{name} · {}", instance.decl.name)
    }
}

fn state(registry: &Registry, host: &Host, instance: &super::Instance) -> &'static str {
    match host.state {
        State::Up => {
            let (stale, _) = registry.windows(host);
            let quiet = (stale.as_millis() as u64).max(2 * registry.apps.step_ms());
            let now = crate::time::now_ms();
            if now.saturating_sub(instance.updated_ms) <= quiet { "up" } else { "idle" }
        }
        State::Stale => "stale",
        State::Down => "down",
    }
}

/// Every application name.
pub fn names(registry: &Registry) -> BTreeSet<String> {
    registry
        .apps
        .hosts()
        .flat_map(|(_, h)| h.instances.values().map(|i| i.decl.app.clone()))
        .collect()
}

/// `GET /api/apps`.
pub fn summaries(registry: &Registry) -> Vec<AppSummary> {
    names(registry)
        .into_iter()
        .map(|app| {
            let list = instances(registry, &app);
            let mut hosts: Vec<String> =
                list.iter().filter_map(|(h, _, _)| h.hostname.clone()).collect();
            hosts.dedup();
            let sum = |f: fn(&InstancePoint) -> f32| {
                let values: Vec<f64> = list
                    .iter()
                    .filter(|(h, _, i)| state(registry, h, i) == "up")
                    .filter_map(|(_, _, i)| i.history.back().and_then(|p| finite32(f(p))))
                    .collect();
                (!values.is_empty()).then(|| values.iter().sum())
            };
            let timers = registry.apps.apps().get(&app);
            let steps: Vec<&StepPoint> = timers
                .iter()
                .flat_map(|a| a.timers.iter())
                .filter(|((name, _), _)| name.ends_with("_seconds"))
                .filter_map(|(_, t)| t.history.back())
                .collect();
            AppSummary {
                instances: list.len(),
                instances_up: list.iter().filter(|(h, _, i)| state(registry, h, i) == "up").count(),
                hosts,
                cpu_percent: sum(|p| p.cpu_percent),
                rss_bytes: sum(|p| p.rss_bytes),
                calls_per_second: (!steps.is_empty())
                    .then(|| steps.iter().map(|p| p.calls_per_second).sum()),
                p99: steps.iter().filter_map(|p| finite(p.p99)).reduce(f64::max),
                app,
            }
        })
        .collect()
}

/// `GET /api/apps/{app}`; `None` when no host runs it.
pub fn app(registry: &Registry, app: &str) -> Option<AppView> {
    let list = instances(registry, app);
    if list.is_empty() {
        return None;
    }
    let step_ms = registry.apps.step_ms();
    let merged = registry.apps.apps().get(app);
    let timers: Vec<TimerNow> = merged
        .map(|a| a.timers.iter().map(|((n, l), t)| timer_now(n, l, t)).collect())
        .unwrap_or_default();
    let mut counters: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut views = Vec::new();
    for (host, id, instance) in &list {
        let host_apps = registry.apps.host(&host.key);
        let mut instance_timers = Vec::new();
        for series in
            host_apps.iter().flat_map(|h| h.series.values()).filter(|s| s.decl.instance == *id)
        {
            let labels = super::labels_text(&series.decl);
            match &series.total {
                Total::Counter(total) if !series.decl.name.starts_with("process_") => {
                    *counters.entry((series.decl.name.clone(), labels)).or_default() += total;
                }
                Total::Distribution(_) | Total::Histogram { .. } => {
                    if let Some(sketch) = series.window.recent(step_ms, crate::time::now_ms()) {
                        let q = |p| sketch.quantile(p).and_then(finite);
                        instance_timers.push(TimerNow {
                            key: timer_key(&series.decl.name, &labels),
                            name: series.decl.name.clone(),
                            labels,
                            calls_per_second: Some(sketch.count as f64 * 1000.0 / step_ms as f64),
                            p50: q(0.5),
                            p90: q(0.9),
                            p99: q(0.99),
                            count: sketch.count,
                            since_start: None,
                        });
                    }
                }
                _ => {}
            }
        }
        instance_timers.sort_by(|a, b| a.key.cmp(&b.key));
        let last = instance.history.back();
        views.push(InstanceView {
            key: format!("{}/{id}", host.id),
            label: label(host, instance),
            host: host.hostname.clone().unwrap_or_default(),
            host_id: host.id.clone(),
            instance: instance.decl.name.clone(),
            pid: instance.decl.pid,
            unit: instance.decl.unit.clone(),
            source: instance.decl.source.clone(),
            state: state(registry, host, instance),
            last_seen: (instance.updated_ms > 0)
                .then(|| crate::time::rfc3339(crate::time::from_unix_ms(instance.updated_ms))),
            cpu_percent: last.and_then(|p| finite32(p.cpu_percent)),
            rss_bytes: last.and_then(|p| finite32(p.rss_bytes)),
            calls_per_second: last.and_then(|p| finite32(p.calls_per_second)),
            timers: instance_timers,
        });
    }
    Some(AppView {
        app: app.to_string(),
        step_seconds: step_ms as f64 / 1000.0,
        instances: views,
        timers,
        counters: counters
            .into_iter()
            .map(|((name, labels), total)| CounterView {
                key: timer_key(&name, &labels),
                name,
                labels,
                total,
            })
            .collect(),
    })
}

/// `GET /api/apps/{app}/history?since=`; `None` when no host runs it.
pub fn history(registry: &Registry, app: &str, since_ms: u64) -> Option<AppHistory> {
    let list = instances(registry, app);
    if list.is_empty() {
        return None;
    }
    let instances = list
        .iter()
        .map(|(host, id, instance)| {
            let mut c = InstanceColumns {
                key: format!("{}/{id}", host.id),
                label: label(host, instance),
                ..InstanceColumns::default()
            };
            for p in instance.history.iter().filter(|p| p.t_ms >= since_ms) {
                c.t.push(p.t_ms);
                c.cpu_percent.push(finite32(p.cpu_percent));
                c.rss_bytes.push(finite32(p.rss_bytes));
                c.calls_per_second.push(finite32(p.calls_per_second));
            }
            c
        })
        .collect();
    let timers = registry
        .apps
        .apps()
        .get(app)
        .map(|a| {
            a.timers
                .iter()
                .map(|((name, labels), timer)| {
                    let mut c = TimerColumns {
                        key: timer_key(name, labels),
                        name: name.clone(),
                        labels: labels.clone(),
                        ..TimerColumns::default()
                    };
                    for p in timer.history.iter().filter(|p| p.t_ms >= since_ms) {
                        c.t.push(p.t_ms);
                        c.calls_per_second.push(finite(p.calls_per_second));
                        c.p50.push(finite(p.p50));
                        c.p90.push(finite(p.p90));
                        c.p99.push(finite(p.p99));
                    }
                    c
                })
                .collect()
        })
        .unwrap_or_default();
    Some(AppHistory { step_seconds: registry.apps.step_ms() as f64 / 1000.0, instances, timers })
}

/// A live event: an instance's new point.
#[derive(Debug, Serialize)]
pub struct InstanceEvent {
    /// As [`InstanceView::key`].
    pub key: String,
    /// As [`InstanceView::label`].
    pub label: String,
    /// Unix ms.
    pub t: u64,
    /// CPU percent.
    pub cpu_percent: Option<f64>,
    /// Resident bytes.
    pub rss_bytes: Option<f64>,
    /// Calls per second.
    pub calls_per_second: Option<f64>,
}

/// A live event: a timer's step closed.
#[derive(Debug, Serialize)]
pub struct StepEvent {
    /// As [`TimerNow::key`].
    pub key: String,
    /// The series name.
    pub name: String,
    /// Labels.
    pub labels: String,
    /// Step start, Unix ms.
    pub t: u64,
    /// Calls per second.
    pub calls_per_second: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// The live events of what the registry's applications did since the last
/// call, for the topics somebody listens to (`wanted`).
pub fn events(
    registry: &mut Registry,
    wanted: impl Fn(&str) -> bool,
) -> Vec<crate::view::EventData> {
    let closed = registry.apps.drain_closed();
    let updates = registry.apps.drain_updates();
    let mut out = Vec::new();
    for c in closed {
        let topic = topic(&c.app);
        if !wanted(&topic) {
            continue;
        }
        let event = StepEvent {
            key: timer_key(&c.timer.0, &c.timer.1),
            name: c.timer.0,
            labels: c.timer.1,
            t: c.point.t_ms,
            calls_per_second: finite(c.point.calls_per_second),
            p50: finite(c.point.p50),
            p90: finite(c.point.p90),
            p99: finite(c.point.p99),
        };
        if let Ok(json) = serde_json::to_string(&event) {
            out.push(crate::view::EventData { host: topic, kind: "step", json });
        }
    }
    for u in updates {
        let topic = topic(&u.app);
        if !wanted(&topic) {
            continue;
        }
        let Some(host) = registry.get(&u.host) else { continue };
        let Some(instance) = registry.apps.host(&u.host).and_then(|h| h.instances.get(&u.instance))
        else {
            continue;
        };
        let event = InstanceEvent {
            key: format!("{}/{}", host.id, u.instance),
            label: label(host, instance),
            t: u.point.t_ms,
            cpu_percent: finite32(u.point.cpu_percent),
            rss_bytes: finite32(u.point.rss_bytes),
            calls_per_second: finite32(u.point.calls_per_second),
        };
        if let Ok(json) = serde_json::to_string(&event) {
            out.push(crate::view::EventData { host: topic, kind: "instance", json });
        }
    }
    out
}

/// The live-stream topic of an application.
pub fn topic(app: &str) -> String {
    format!("app:{app}")
}
