//! Applications across the fleet: every host's application series (as its
//! agent declared them, by id) and, per application, what people read:
//! its instances with their CPU and memory, and its timers' calls per
//! second and latency percentiles merged across every instance and host.
//!
//! Pure, like the registry that owns it: it takes declarations, points and
//! the time, and keeps state; the router thread feeds it, the HTTP side
//! reads views built from it.
//!
//! Cumulative values for `/metrics` are kept per series: counters add up
//! the increases agents send, distributions merge their sketches,
//! histograms add their bucket increases. Percentiles are never averaged:
//! each timer's observations of one time step (`--app-step`, 5 s by
//! default) from all instances are merged into one sketch, and p50, p90
//! and p99 are read from it when the step closes (two seconds after its
//! end, for samples in flight). History: the last hour of closed steps per
//! timer, and the last hour of points per instance.

pub mod expose;
pub mod view;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::Duration,
};

use curvemon_keys::PublicKey;
use curvemon_protocol::{
    AppInstance, AppKind, AppPoint, AppSeries, AppSeriesDecl, AppValue, Sketch, validate,
};
use tracing::warn;

/// How long closed steps and instance points are kept.
pub const HISTORY: Duration = Duration::from_secs(3600);

/// Wait this long after a step ends before closing it (samples in flight).
const GRACE_MS: u64 = 2_000;

/// Application series one host may have at the collector.
pub const MAX_SERIES_PER_HOST: usize = 20_000;

/// Why a declaration or point was not taken.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Counters {
    /// Points for series the collector was not told about.
    pub unknown_series: u64,
    /// Points whose value does not fit the series' kind.
    pub bad_points: u64,
    /// Declarations past [`MAX_SERIES_PER_HOST`], or of unknown instances.
    pub refused_series: u64,
    /// Points for time steps already closed (still in the totals).
    pub late_points: u64,
}

/// A series' running state, for `/metrics` and the views.
#[derive(Debug, Clone)]
pub enum Total {
    /// Sum of the increases.
    Counter(f64),
    /// The last level (NaN before the first).
    Gauge(f64),
    /// Every observation so far.
    Distribution(Sketch),
    /// Cumulative per-bucket counts and sum.
    Histogram {
        /// Per bucket (not cumulative), the last is `+Inf`.
        counts: Vec<f64>,
        /// Sum of observations.
        sum: f64,
    },
    /// The last quantiles and the running sum and count.
    Summary {
        /// One per declared quantile.
        values: Vec<f64>,
        /// Running sum.
        sum: f64,
        /// Running count.
        count: f64,
    },
}

/// One application series of one host.
#[derive(Debug, Clone)]
pub struct Series {
    /// As the agent declared it.
    pub decl: AppSeriesDecl,
    /// Its running state.
    pub total: Total,
    /// When it last had a point (the agent's Unix ms).
    pub updated_ms: u64,
    /// A distribution's observations of the last few steps (for the
    /// instance's own recent percentiles).
    pub window: Window,
}

/// Observations of the last few steps of one series.
#[derive(Debug, Clone, Default)]
pub struct Window(VecDeque<(u64, Sketch)>);

impl Window {
    fn add(&mut self, step: u64, sketch: &Sketch) {
        match self.0.iter_mut().find(|(s, _)| *s == step) {
            Some((_, kept)) => kept.merge(sketch),
            None => {
                self.0.push_back((step, sketch.clone()));
                self.0.make_contiguous().sort_by_key(|(s, _)| *s);
                while self.0.len() > 3 {
                    self.0.pop_front();
                }
            }
        }
    }

    /// The observations of the latest step that has closed by `now_ms`.
    pub fn recent(&self, step_ms: u64, now_ms: u64) -> Option<&Sketch> {
        self.0
            .iter()
            .rev()
            .find(|(start, _)| start.saturating_add(step_ms + GRACE_MS) <= now_ms)
            .filter(|(start, _)| now_ms.saturating_sub(*start) <= 3 * step_ms + GRACE_MS)
            .map(|(_, s)| s)
    }
}

/// One point of an instance's history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstancePoint {
    /// The sample's time, Unix ms.
    pub t_ms: u64,
    /// CPU busy percent of one core over about the last step (NaN unknown).
    pub cpu_percent: f32,
    /// Resident bytes (NaN unknown).
    pub rss_bytes: f32,
    /// Timer observations per second since the previous point.
    pub calls_per_second: f32,
}

/// One instance of an application on one host.
#[derive(Debug, Clone)]
pub struct Instance {
    /// As the agent declared it.
    pub decl: AppInstance,
    /// Recent points, oldest first.
    pub history: VecDeque<InstancePoint>,
    /// When it last had a point (Unix ms).
    pub updated_ms: u64,
    last_point_ms: Option<u64>,
    /// CPU seconds so far and recent totals, for a rate over a step: the
    /// kernel counts CPU time in 10 ms ticks, so a rate over one second of
    /// a lightly loaded process jumps between 0 % and 2 %.
    cpu_total: f64,
    cpu_recent: VecDeque<(u64, f64)>,
}

/// Every application series of one host.
#[derive(Debug, Clone, Default)]
pub struct HostApps {
    /// Instances by the agent's id.
    pub instances: HashMap<u32, Instance>,
    /// Series by the agent's id.
    pub series: HashMap<u32, Series>,
}

/// A closed time step of a timer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPoint {
    /// The step's start, Unix ms.
    pub t_ms: u64,
    /// Observations per second in the step, all instances together.
    pub calls_per_second: f64,
    /// Percentiles of the step's observations (NaN with none).
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// A timer of an application: a distribution or histogram series name and
/// labels, merged across instances and hosts.
#[derive(Debug, Clone, Default)]
pub struct Timer {
    /// Steps not closed yet, by start.
    open: BTreeMap<u64, Sketch>,
    /// Closed steps, oldest first.
    pub history: VecDeque<StepPoint>,
    /// Every observation since the collector started, merged.
    pub total: Sketch,
}

/// A timer's identity: series name and its labels as `a="x",b="y"`.
pub type TimerKey = (String, String);

/// What is merged of one application across the fleet (its instances and
/// series are the hosts'; see [`Apps::hosts`]).
#[derive(Debug, Clone, Default)]
pub struct App {
    /// Its timers.
    pub timers: BTreeMap<TimerKey, Timer>,
}

/// A closed step, for the live streams.
#[derive(Debug, Clone)]
pub struct Closed {
    /// The application.
    pub app: String,
    /// The timer.
    pub timer: TimerKey,
    /// Its numbers.
    pub point: StepPoint,
}

/// A new instance point, for the live streams.
#[derive(Debug, Clone)]
pub struct InstanceUpdate {
    /// The application.
    pub app: String,
    /// The host's key.
    pub host: PublicKey,
    /// The agent's id of the instance.
    pub instance: u32,
    /// The point.
    pub point: InstancePoint,
}

/// Applications across the fleet.
#[derive(Debug)]
pub struct Apps {
    hosts: HashMap<PublicKey, HostApps>,
    apps: BTreeMap<String, App>,
    step_ms: u64,
    /// Oddities, counted.
    pub counters: Counters,
    closed: Vec<Closed>,
    updates: Vec<InstanceUpdate>,
}

/// Labels as one string, sorted as declared (the agent sorts them).
pub fn labels_text(decl: &AppSeriesDecl) -> String {
    decl.labels.iter().map(|l| format!("{}={:?}", l.name, l.value)).collect::<Vec<_>>().join(",")
}

impl Apps {
    /// No applications yet; timers merge in steps of `step`.
    pub fn new(step: Duration) -> Self {
        Apps {
            hosts: HashMap::new(),
            apps: BTreeMap::new(),
            step_ms: u64::try_from(step.as_millis()).unwrap_or(5_000).max(1_000),
            counters: Counters::default(),
            closed: Vec::new(),
            updates: Vec::new(),
        }
    }

    /// The step length, ms.
    pub fn step_ms(&self) -> u64 {
        self.step_ms
    }

    /// The application series of one host.
    pub fn host(&self, key: &PublicKey) -> Option<&HostApps> {
        self.hosts.get(key)
    }

    /// Every host with application series.
    pub fn hosts(&self) -> impl Iterator<Item = (&PublicKey, &HostApps)> {
        self.hosts.iter()
    }

    /// Every application, by name.
    pub fn apps(&self) -> &BTreeMap<String, App> {
        &self.apps
    }

    /// A host's agent started anew (a hello): its ids mean nothing now.
    pub fn forget(&mut self, key: &PublicKey) {
        self.hosts.remove(key);
    }

    /// Takes a declaration message of `host`.
    ///
    /// # Errors
    /// A declaration that breaks the protocol's rules (the caller refuses
    /// the agent, as for a bad model); nothing of it is kept.
    pub fn declare(
        &mut self,
        host: PublicKey,
        message: AppSeries,
    ) -> Result<(), validate::ModelError> {
        validate::app_series(&message)?;
        let apps = self.hosts.entry(host).or_default();
        // A full declaration replaces everything, but what it repeats keeps
        // its totals and history.
        let (mut old_instances, mut old_series) = if message.full {
            (std::mem::take(&mut apps.instances), std::mem::take(&mut apps.series))
        } else {
            (HashMap::new(), HashMap::new())
        };
        for id in &message.retire {
            apps.series.remove(id);
        }
        for id in &message.retire_instances {
            apps.instances.remove(id);
            apps.series.retain(|_, s| s.decl.instance != *id);
        }
        for decl in message.instances {
            let id = decl.id;
            let keep = apps
                .instances
                .remove(&id)
                .or_else(|| old_instances.remove(&id))
                .filter(|i| i.decl == decl);
            let instance = keep.unwrap_or(Instance {
                decl,
                history: VecDeque::new(),
                updated_ms: 0,
                last_point_ms: None,
                cpu_total: 0.0,
                cpu_recent: VecDeque::new(),
            });
            apps.instances.insert(id, instance);
        }
        for decl in message.declare {
            if !apps.instances.contains_key(&decl.instance)
                || (apps.series.len() >= MAX_SERIES_PER_HOST && !apps.series.contains_key(&decl.id))
            {
                self.counters.refused_series += 1;
                continue;
            }
            let total = match &decl.kind {
                AppKind::Counter => Total::Counter(0.0),
                AppKind::Gauge => Total::Gauge(f64::NAN),
                AppKind::Distribution => Total::Distribution(Sketch::new()),
                AppKind::Histogram { bounds } => {
                    Total::Histogram { counts: vec![0.0; bounds.len() + 1], sum: 0.0 }
                }
                AppKind::Summary { quantiles } => {
                    Total::Summary { values: vec![f64::NAN; quantiles.len()], sum: 0.0, count: 0.0 }
                }
            };
            // A repeated declaration (a full one after a reconnect) keeps
            // the totals, so counters do not start over.
            let kept = apps
                .series
                .remove(&decl.id)
                .or_else(|| old_series.remove(&decl.id))
                .filter(|s| s.decl == decl);
            let series =
                kept.unwrap_or(Series { decl, total, updated_ms: 0, window: Window::default() });
            apps.series.insert(series.decl.id, series);
        }
        Ok(())
    }

    /// Takes one sample's application points from `host`, taken at
    /// `taken_at_ms`.
    pub fn points(&mut self, host: PublicKey, taken_at_ms: u64, points: Vec<AppPoint>) {
        let Some(apps) = self.hosts.get_mut(&host) else {
            self.counters.unknown_series += points.len() as u64;
            return;
        };
        let step = taken_at_ms - taken_at_ms % self.step_ms;
        let mut per_instance: HashMap<u32, (f64, f64, f64)> = HashMap::new();
        let mut warned = false;
        for point in points {
            let Some(series) = apps.series.get_mut(&point.series) else {
                self.counters.unknown_series += 1;
                continue;
            };
            if !point.value.fits(&series.decl.kind) {
                self.counters.bad_points += 1;
                if !warned {
                    warn!(series = %series.decl.name, "An agent sent an application value that does not fit its series.");
                    warned = true;
                }
                continue;
            }
            series.updated_ms = taken_at_ms;
            let instance = series.decl.instance;
            let Some(app) = apps.instances.get(&instance).map(|i| i.decl.app.clone()) else {
                continue;
            };
            let entry = per_instance.entry(instance).or_insert((f64::NAN, f64::NAN, 0.0));
            let observed = match (&mut series.total, &point.value) {
                (Total::Counter(total), AppValue::Counter(v)) => {
                    *total += v;
                    if series.decl.name == "process_cpu_seconds_total" {
                        entry.0 = *v;
                    }
                    None
                }
                (Total::Gauge(total), AppValue::Gauge(v)) => {
                    *total = *v;
                    if series.decl.name == "process_resident_memory_bytes" {
                        entry.1 = *v;
                    }
                    None
                }
                (Total::Distribution(total), AppValue::Distribution(sketch)) => {
                    total.merge(sketch);
                    Some(sketch.clone())
                }
                (Total::Histogram { counts, sum }, AppValue::Histogram { counts: add, sum: s }) => {
                    counts.iter_mut().zip(add).for_each(|(c, a)| *c += a);
                    *sum += s;
                    let AppKind::Histogram { bounds } = &series.decl.kind else { continue };
                    Some(histogram_sketch(bounds, add))
                }
                (
                    Total::Summary { values, sum, count },
                    AppValue::Summary { values: v, sum: s, count: c },
                ) => {
                    values.clone_from(v);
                    *sum += s;
                    *count += c;
                    None
                }
                _ => None,
            };
            if let Some(sketch) = observed {
                series.window.add(step, &sketch);
                entry.2 += sketch.count as f64;
                let key = (series.decl.name.clone(), labels_text(&series.decl));
                let timer = self.apps.entry(app).or_default().timers.entry(key).or_default();
                timer.total.merge(&sketch);
                if timer.history.back().is_some_and(|p| p.t_ms >= step) {
                    self.counters.late_points += 1;
                } else {
                    timer.open.entry(step).or_default().merge(&sketch);
                }
            }
        }
        let step_ms = self.step_ms;
        for (id, (cpu_seconds, rss, calls)) in per_instance {
            let Some(instance) = apps.instances.get_mut(&id) else { continue };
            let seconds = instance
                .last_point_ms
                .map(|t| taken_at_ms.saturating_sub(t) as f64 / 1000.0)
                .filter(|s| *s > 0.0);
            // CPU over about a step: from the newest total at least a step old.
            let mut cpu_percent = f32::NAN;
            if cpu_seconds.is_finite() {
                instance.cpu_total += cpu_seconds;
                let since = instance
                    .cpu_recent
                    .iter()
                    .rev()
                    .find(|(t, _)| taken_at_ms.saturating_sub(*t) >= step_ms)
                    .or(instance.cpu_recent.front())
                    .copied();
                if let Some((t, total)) = since.filter(|(t, _)| *t < taken_at_ms) {
                    let span = (taken_at_ms - t) as f64 / 1000.0;
                    cpu_percent = (100.0 * (instance.cpu_total - total) / span) as f32;
                }
                instance.cpu_recent.push_back((taken_at_ms, instance.cpu_total));
                while instance
                    .cpu_recent
                    .front()
                    .is_some_and(|(t, _)| taken_at_ms.saturating_sub(*t) > 2 * step_ms)
                {
                    instance.cpu_recent.pop_front();
                }
            }
            let point = InstancePoint {
                t_ms: taken_at_ms,
                cpu_percent,
                rss_bytes: rss as f32,
                calls_per_second: seconds.map_or(f32::NAN, |s| (calls / s) as f32),
            };
            instance.last_point_ms = Some(taken_at_ms);
            instance.updated_ms = taken_at_ms;
            if instance.history.back().is_some_and(|p| p.t_ms > taken_at_ms) {
                continue;
            }
            instance.history.push_back(point);
            while instance
                .history
                .front()
                .is_some_and(|p| taken_at_ms.saturating_sub(p.t_ms) > HISTORY.as_millis() as u64)
            {
                instance.history.pop_front();
            }
            self.updates.push(InstanceUpdate {
                app: instance.decl.app.clone(),
                host,
                instance: id,
                point,
            });
        }
    }

    /// Closes the steps that ended more than the grace before `now_ms`.
    pub fn close_steps(&mut self, now_ms: u64) {
        let step_ms = self.step_ms;
        let horizon = HISTORY.as_millis() as u64;
        for (name, app) in &mut self.apps {
            for (key, timer) in &mut app.timers {
                while let Some((&start, _)) = timer.open.first_key_value() {
                    if start.saturating_add(step_ms + GRACE_MS) > now_ms {
                        break;
                    }
                    let Some((_, sketch)) = timer.open.pop_first() else { break };
                    let q = |p| sketch.quantile(p).unwrap_or(f64::NAN);
                    let point = StepPoint {
                        t_ms: start,
                        calls_per_second: sketch.count as f64 * 1000.0 / step_ms as f64,
                        p50: q(0.5),
                        p90: q(0.9),
                        p99: q(0.99),
                    };
                    timer.history.push_back(point);
                    self.closed.push(Closed { app: name.clone(), timer: key.clone(), point });
                }
                while timer.history.front().is_some_and(|p| now_ms.saturating_sub(p.t_ms) > horizon)
                {
                    timer.history.pop_front();
                }
            }
            app.timers
                .retain(|_, t| !t.history.is_empty() || !t.open.is_empty() || t.total.count > 0);
        }
    }

    /// Steps closed since the last call, for the live streams.
    pub fn drain_closed(&mut self) -> Vec<Closed> {
        std::mem::take(&mut self.closed)
    }

    /// Instance points since the last call, for the live streams.
    pub fn drain_updates(&mut self) -> Vec<InstanceUpdate> {
        std::mem::take(&mut self.updates)
    }
}

/// A classic histogram's bucket increases as a sketch: each bucket's count
/// at its middle (the +Inf bucket at its lower bound), so percentiles are
/// as coarse as the application's buckets.
fn histogram_sketch(bounds: &[f64], counts: &[f64]) -> Sketch {
    let mut sketch = Sketch::new();
    for (i, count) in counts.iter().enumerate() {
        let n = count.round();
        if n < 1.0 {
            continue;
        }
        let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
        let value = match bounds.get(i) {
            Some(upper) => (lower + upper) / 2.0,
            None => lower,
        };
        sketch.observe(value, n as u64);
    }
    sketch
}

#[cfg(test)]
mod tests {
    use super::*;
    use curvemon_keys::KeyPair;
    use curvemon_protocol::Label;

    fn instance(id: u32, app: &str) -> AppInstance {
        AppInstance {
            id,
            app: app.into(),
            name: format!("i{id}"),
            pid: 0,
            unit: String::new(),
            source: "statsd-udp".into(),
        }
    }

    fn decl(id: u32, instance: u32, name: &str, kind: AppKind) -> AppSeriesDecl {
        AppSeriesDecl { id, instance, name: name.into(), help: String::new(), kind, labels: vec![] }
    }

    fn sketch(values: &[f64]) -> Sketch {
        let mut s = Sketch::new();
        values.iter().for_each(|v| s.observe(*v, 1));
        s
    }

    #[test]
    fn timers_merge_across_hosts_per_step() {
        let mut apps = Apps::new(Duration::from_secs(5));
        let (a, b) = (KeyPair::generate().unwrap().public, KeyPair::generate().unwrap().public);
        for host in [a, b] {
            apps.declare(
                host,
                AppSeries {
                    full: true,
                    instances: vec![instance(1, "shop")],
                    declare: vec![
                        decl(2, 1, "checkout_seconds", AppKind::Distribution),
                        decl(3, 1, "process_cpu_seconds_total", AppKind::Counter),
                        decl(4, 1, "process_resident_memory_bytes", AppKind::Gauge),
                    ],
                    retire: vec![],
                    retire_instances: vec![],
                },
            )
            .unwrap();
        }
        let t0 = 1_000_000_000_000u64; // a step boundary
        let point = |series, value| AppPoint { series, value };
        apps.points(a, t0 + 1000, vec![point(2, AppValue::Distribution(sketch(&[0.01; 50])))]);
        apps.points(b, t0 + 2000, vec![point(2, AppValue::Distribution(sketch(&[1.0; 50])))]);
        apps.close_steps(t0 + 6000);
        assert!(apps.drain_closed().is_empty(), "within the grace");
        apps.close_steps(t0 + 7000);
        let closed = apps.drain_closed();
        assert_eq!(closed.len(), 1);
        let p = closed[0].point;
        assert_eq!(p.t_ms, t0);
        assert_eq!(p.calls_per_second, 20.0, "100 observations in 5 s");
        assert!((p.p90 - 1.0).abs() < 0.02 && (p.p50 - 0.01).abs() < 0.001, "{p:?}");
        // A late point still counts in the total, not in the closed step.
        apps.points(a, t0 + 3000, vec![point(2, AppValue::Distribution(sketch(&[5.0])))]);
        assert_eq!(apps.counters.late_points, 1);
        let timer = &apps.apps()["shop"].timers[&("checkout_seconds".into(), String::new())];
        assert_eq!(timer.total.count, 101);

        // Instance CPU and memory, from the process series.
        apps.points(
            a,
            t0 + 10_000,
            vec![point(3, AppValue::Counter(0.0)), point(4, AppValue::Gauge(5e6))],
        );
        apps.points(
            a,
            t0 + 12_000,
            vec![point(3, AppValue::Counter(0.5)), point(4, AppValue::Gauge(6e6))],
        );
        let history = &apps.host(&a).unwrap().instances[&1].history;
        let last = history.back().unwrap();
        assert_eq!((last.cpu_percent, last.rss_bytes), (25.0, 6e6));
    }

    #[test]
    fn declarations_totals_and_oddities() {
        let mut apps = Apps::new(Duration::from_secs(5));
        let host = KeyPair::generate().unwrap().public;
        let full = |declare| AppSeries {
            full: true,
            instances: vec![instance(1, "shop")],
            declare,
            retire: vec![],
            retire_instances: vec![],
        };
        apps.declare(host, full(vec![decl(2, 1, "requests_total", AppKind::Counter)])).unwrap();
        apps.points(host, 1, vec![AppPoint { series: 2, value: AppValue::Counter(3.0) }]);
        apps.points(host, 2, vec![AppPoint { series: 2, value: AppValue::Counter(4.0) }]);
        // A reconnect declares everything again: the total goes on.
        apps.declare(host, full(vec![decl(2, 1, "requests_total", AppKind::Counter)])).unwrap();
        let total = |apps: &Apps| match apps.host(&host).unwrap().series[&2].total {
            Total::Counter(v) => v,
            _ => f64::NAN,
        };
        assert_eq!(total(&apps), 7.0);
        apps.points(host, 3, vec![AppPoint { series: 9, value: AppValue::Counter(1.0) }]);
        apps.points(host, 3, vec![AppPoint { series: 2, value: AppValue::Gauge(1.0) }]);
        apps.points(host, 3, vec![AppPoint { series: 2, value: AppValue::Counter(-1.0) }]);
        assert_eq!((apps.counters.unknown_series, apps.counters.bad_points), (1, 2));
        let mut bad = full(vec![decl(5, 1, "x", AppKind::Gauge)]);
        bad.declare[0].labels = vec![Label::new("instance", "x")];
        assert!(apps.declare(host, bad).is_err());
        assert_eq!(total(&apps), 7.0, "a refused declaration changes nothing");
        apps.declare(host, full(vec![decl(6, 7, "y", AppKind::Gauge)])).unwrap();
        assert_eq!(apps.counters.refused_series, 1, "an unknown instance");
    }
}
