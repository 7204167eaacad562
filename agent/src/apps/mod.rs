//! Application series on this host: what StatsD lines and scraped
//! `/metrics` endpoints report, aggregated per agent interval and laid out
//! as the wire wants them (declared once by id, then values by id).
//!
//! An **application** is named by a DogStatsD `app` tag, else by the first
//! dot-separated component of a StatsD name (`shop.checkout.time` is
//! application `shop`, metric `checkout.time`), else it is
//! `[statsd] default_app`; a scrape target names its own. An **instance**
//! is one running copy: an `instance` tag, else the sending process where
//! the agent knows it (Unix sockets pass its pid: its systemd service, or
//! `comm[pid]`), else the application on this host as a whole. For an
//! instance with a known process the agent also reports its CPU seconds and
//! resident memory (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`), the names Prometheus clients use.
//!
//! Per interval: counters add up (sent as the increase), gauges keep their
//! last value, sets count distinct members, timers (milliseconds, sent as
//! seconds), histograms and distributions go into mergeable sketches. Only
//! series that changed are sent. Bounded by design: at most
//! `max_series` series in all and `max_series_per_app` per application
//! (a new series past either is refused and counted), and a series idle for
//! `ttl` is retired; an instance without series is retired with it.

pub mod naming;
pub mod process;

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use curvemon_protocol::{
    AppInstance, AppKind, AppPoint, AppSeries, AppSeriesDecl, AppValue, Label, Sketch,
};

use crate::{
    roots::Roots,
    sources::{
        scrape::text::{Scraped, ScrapedValue},
        statsd::line::{Metric, Type, Value},
    },
};

/// Why a line or a scraped series was not taken, as the `reason` label of
/// `curvemon_statsd_dropped_total` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Not a StatsD line (or not UTF-8).
    Parse,
    /// A new series past `max_series` or `max_series_per_app`.
    SeriesCap,
    /// A name that is also another type's in the same instance.
    TypeConflict,
    /// A set past `max_set_members` distinct members in one interval.
    SetCap,
    /// A line longer than a stream connection's buffer.
    TooLong,
    /// Datagrams the kernel dropped because the agent's socket buffer was
    /// full (read from `/proc/net/udp`).
    ReceiveBuffer,
    /// Points past the frame limit in one interval.
    FrameLimit,
}

impl Drop {
    /// Every reason, in counter order.
    pub const ALL: [Drop; 7] = [
        Drop::Parse,
        Drop::SeriesCap,
        Drop::TypeConflict,
        Drop::SetCap,
        Drop::TooLong,
        Drop::ReceiveBuffer,
        Drop::FrameLimit,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Drop::Parse => "parse_error",
            Drop::SeriesCap => "series_cap",
            Drop::TypeConflict => "type_conflict",
            Drop::SetCap => "set_cap",
            Drop::TooLong => "too_long",
            Drop::ReceiveBuffer => "receive_buffer",
            Drop::FrameLimit => "frame_limit",
        }
    }
}

/// The bounds of the registry.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Series in all.
    pub max_series: usize,
    /// Series of one application.
    pub max_series_per_app: usize,
    /// A series not updated for this long is retired.
    pub ttl: Duration,
    /// Distinct members a set counts per interval.
    pub max_set_members: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series: 10_000,
            max_series_per_app: 1_000,
            ttl: Duration::from_secs(600),
            max_set_members: 10_000,
        }
    }
}

/// Where data came from: how it arrived and, where known, the sender.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `statsd-udp`, `statsd-unix`, `statsd-stream`, `scrape <url>`.
    pub source: String,
    /// The sending process, when the transport tells it.
    pub pid: Option<u32>,
}

/// What a series holds between two flushes.
#[derive(Debug)]
enum State {
    Counter { pending: f64, last_total: Option<f64> },
    Gauge { value: f64 },
    Set { members: HashSet<Box<str>> },
    Sketch { sketch: Sketch, milliseconds: bool },
    Histogram { pending: Vec<f64>, sum: f64, last: Option<(Vec<f64>, f64)> },
    Summary { values: Vec<f64>, sum: f64, count: f64, last: Option<(f64, f64)> },
}

#[derive(Debug)]
struct Series {
    decl: AppSeriesDecl,
    app: String,
    state: State,
    touched: bool,
    updated: Instant,
    /// Raw StatsD keys that find this series without building its labels.
    raw_keys: Vec<Box<str>>,
}

#[derive(Debug)]
struct Instance {
    decl: AppInstance,
    series: usize,
    /// The two process series and the CPU seconds last read.
    process: Option<(u32, u32, Option<f64>)>,
}

/// The canonical identity of a series: instance, exported name, labels.
type SeriesKey = (u32, String, Vec<(String, String)>);

/// Counts of what was taken and what was not.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// StatsD lines (values of packed lines count once) taken.
    pub lines: u64,
    /// Refused, by [`Drop::ALL`] position.
    pub dropped: [u64; Drop::ALL.len()],
}

impl Counts {
    /// One more refusal for `reason`.
    pub fn drop(&mut self, reason: Drop, n: u64) {
        if let Some(i) = Drop::ALL.iter().position(|r| *r == reason) {
            self.dropped[i] = self.dropped[i].saturating_add(n);
        }
    }
}

/// What one flush produced.
#[derive(Debug, Default)]
pub struct Flush {
    /// Declarations and retirements since the last flush, if any.
    pub declarations: Option<AppSeries>,
    /// Values of the series that changed.
    pub points: Vec<AppPoint>,
}

/// Every application series on this host.
pub struct Apps {
    limits: Limits,
    default_app: String,
    roots: Roots,
    instances: HashMap<u32, Instance>,
    instance_ids: HashMap<(String, String, String), u32>,
    series: HashMap<u32, Series>,
    by_key: HashMap<SeriesKey, u32>,
    by_raw: HashMap<Box<str>, u32>,
    per_app: HashMap<String, usize>,
    /// Process identities by pid, looked up once.
    identities: HashMap<u32, Option<process::Identity>>,
    next_id: u32,
    new_instances: Vec<u32>,
    new_series: Vec<u32>,
    retired: Vec<u32>,
    retired_instances: Vec<u32>,
    raw: String,
    /// What was taken and refused.
    pub counts: Counts,
}

/// At most this many raw spellings (tag orders) point at one series.
const RAW_KEYS_PER_SERIES: usize = 4;

impl Apps {
    /// An empty registry; `roots` is where instance processes are read.
    pub fn new(limits: Limits, default_app: String, roots: Roots) -> Self {
        Apps {
            limits,
            default_app,
            roots,
            instances: HashMap::new(),
            instance_ids: HashMap::new(),
            series: HashMap::new(),
            by_key: HashMap::new(),
            by_raw: HashMap::new(),
            per_app: HashMap::new(),
            identities: HashMap::new(),
            next_id: 1,
            new_instances: Vec::new(),
            new_series: Vec::new(),
            retired: Vec::new(),
            retired_instances: Vec::new(),
            raw: String::new(),
            counts: Counts::default(),
        }
    }

    /// Live series.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    fn next_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// The instance of `app` named `name` from `origin`, created if new.
    /// Both names must already be [`naming::display_name`]s.
    fn instance(&mut self, app: &str, name: &str, origin: &Origin) -> u32 {
        let key = (app.to_string(), name.to_string(), origin.source.clone());
        if let Some(id) = self.instance_ids.get(&key) {
            return *id;
        }
        let id = self.next_id();
        let identity = origin.pid.and_then(|pid| self.identity(pid));
        let decl = AppInstance {
            id,
            app: app.to_string(),
            name: name.to_string(),
            pid: origin.pid.unwrap_or(0),
            unit: identity.map(|i| i.unit).unwrap_or_default(),
            source: origin.source.clone(),
        };
        self.instance_ids.insert(key, id);
        self.instances.insert(id, Instance { decl, series: 0, process: None });
        self.new_instances.push(id);
        if let Some(pid) = origin.pid {
            self.watch_process(id, app, pid);
        }
        id
    }

    fn identity(&mut self, pid: u32) -> Option<process::Identity> {
        let roots = &self.roots;
        self.identities.entry(pid).or_insert_with(|| process::identify(roots, pid)).clone()
    }

    /// Declares the CPU and memory series of an instance's process.
    fn watch_process(&mut self, instance: u32, app: &str, pid: u32) {
        let cpu = self.declare(
            app,
            instance,
            "process_cpu_seconds_total",
            format!("CPU seconds of process {pid}, measured by the agent."),
            AppKind::Counter,
            Vec::new(),
            State::Counter { pending: 0.0, last_total: None },
        );
        let rss = self.declare(
            app,
            instance,
            "process_resident_memory_bytes",
            format!("Resident memory of process {pid}, measured by the agent."),
            AppKind::Gauge,
            Vec::new(),
            State::Gauge { value: f64::NAN },
        );
        if let (Some(cpu), Some(rss), Some(i)) = (cpu, rss, self.instances.get_mut(&instance)) {
            i.process = Some((cpu, rss, None));
        }
    }

    /// A new series, if the caps allow it.
    #[allow(clippy::too_many_arguments)]
    fn declare(
        &mut self,
        app: &str,
        instance: u32,
        name: &str,
        help: String,
        kind: AppKind,
        labels: Vec<(String, String)>,
        state: State,
    ) -> Option<u32> {
        let per_app = self.per_app.get(app).copied().unwrap_or(0);
        if self.series.len() >= self.limits.max_series || per_app >= self.limits.max_series_per_app
        {
            self.counts.drop(Drop::SeriesCap, 1);
            return None;
        }
        let id = self.next_id();
        let key = (instance, name.to_string(), labels.clone());
        let decl = AppSeriesDecl {
            id,
            instance,
            name: name.to_string(),
            help,
            kind,
            labels: labels.into_iter().map(|(n, v)| Label::new(n, v)).collect(),
        };
        // Whatever an application sends, the agent never declares what the
        // collector would refuse (it would refuse the whole message).
        let instance_decl = self.instances.get(&instance).map(|i| i.decl.clone());
        let single = AppSeries {
            full: false,
            instances: instance_decl.into_iter().collect(),
            declare: vec![decl.clone()],
            retire: Vec::new(),
            retire_instances: Vec::new(),
        };
        if curvemon_protocol::validate::app_series(&single).is_err() {
            self.counts.drop(Drop::Parse, 1);
            return None;
        }
        self.by_key.insert(key, id);
        *self.per_app.entry(app.to_string()).or_default() += 1;
        if let Some(i) = self.instances.get_mut(&instance) {
            i.series += 1;
        }
        self.series.insert(
            id,
            Series {
                decl,
                app: app.to_string(),
                state,
                touched: false,
                updated: Instant::now(),
                raw_keys: Vec::new(),
            },
        );
        self.new_series.push(id);
        Some(id)
    }

    /// Takes one StatsD line from `origin`.
    pub fn statsd(&mut self, origin: &Origin, metric: &Metric<'_>, now: Instant) {
        // The fast path: this exact spelling was seen before.
        self.raw.clear();
        for part in [origin.source.as_str(), metric.name, metric.tags, kind_code(metric.kind)] {
            self.raw.push_str(part);
            self.raw.push('\u{1f}');
        }
        if let Some(pid) = origin.pid {
            self.raw.push_str(&pid.to_string());
        }
        let id = match self.by_raw.get(self.raw.as_str()) {
            Some(id) => *id,
            None => match self.statsd_series(origin, metric) {
                Some(id) => {
                    if let Some(series) = self.series.get_mut(&id)
                        && series.raw_keys.len() < RAW_KEYS_PER_SERIES
                    {
                        let raw: Box<str> = self.raw.as_str().into();
                        series.raw_keys.push(raw.clone());
                        self.by_raw.insert(raw, id);
                    }
                    id
                }
                None => return,
            },
        };
        let max_members = self.limits.max_set_members;
        let Some(series) = self.series.get_mut(&id) else { return };
        let weight = (1.0 / metric.rate).round().max(1.0) as u64;
        let mut set_full = 0u64;
        for value in metric.values() {
            match (&mut series.state, value) {
                (State::Counter { pending, .. }, Ok(Value::Number(v))) => {
                    *pending += v / metric.rate
                }
                (State::Gauge { value }, Ok(Value::Number(v))) => *value = v,
                (State::Gauge { value }, Ok(Value::Delta(d))) => {
                    *value = if value.is_nan() { d } else { *value + d };
                }
                (State::Set { members }, Ok(Value::Member(m))) => {
                    if members.len() < max_members {
                        members.insert(m.into());
                    } else if !members.contains(m) {
                        set_full += 1;
                    }
                }
                (State::Sketch { sketch, milliseconds }, Ok(Value::Number(v))) => {
                    sketch.observe(if *milliseconds { v / 1000.0 } else { v }, weight);
                }
                _ => {}
            }
        }
        series.touched = true;
        series.updated = now;
        self.counts.lines += 1;
        if set_full > 0 {
            self.counts.drop(Drop::SetCap, set_full);
        }
    }

    /// Finds or makes the series of a StatsD line (the slow path).
    fn statsd_series(&mut self, origin: &Origin, metric: &Metric<'_>) -> Option<u32> {
        let mut app_tag = None;
        let mut instance_tag = None;
        let mut labels: Vec<(String, String)> = Vec::new();
        for (key, value) in metric.tags() {
            match (key, value) {
                ("app", Some(v)) => app_tag = Some(v),
                ("instance", Some(v)) => instance_tag = Some(v),
                (key, value) => {
                    let Some(name) = naming::label_name(key) else { continue };
                    let value = naming::label_value(value.unwrap_or("true"));
                    labels.retain(|(n, _)| *n != name);
                    labels.push((name, value));
                }
            }
        }
        labels.sort();
        labels.truncate(curvemon_protocol::validate::MAX_LABELS);
        let default_app = self.default_app.clone();
        let (app, metric_name) = naming::split(metric.name, app_tag, &default_app);
        let Some(app) = naming::display_name(app, curvemon_protocol::validate::MAX_APP_LEN) else {
            self.counts.drop(Drop::Parse, 1);
            return None;
        };
        let Some(base) = naming::metric_name(metric_name) else {
            self.counts.drop(Drop::Parse, 1);
            return None;
        };
        let (name, kind, state, help) = match metric.kind {
            Type::Counter => (
                naming::exported(&base, "_total"),
                AppKind::Counter,
                State::Counter { pending: 0.0, last_total: None },
                "counter",
            ),
            Type::Gauge => (base, AppKind::Gauge, State::Gauge { value: f64::NAN }, "gauge"),
            Type::Set => (base, AppKind::Gauge, State::Set { members: HashSet::new() }, "set"),
            Type::Timer => (
                naming::exported(&base, "_seconds"),
                AppKind::Distribution,
                State::Sketch { sketch: Sketch::new(), milliseconds: true },
                "timer",
            ),
            Type::Histogram | Type::Distribution => (
                base,
                AppKind::Distribution,
                State::Sketch { sketch: Sketch::new(), milliseconds: false },
                "distribution",
            ),
        };
        if !naming::acceptable(&name) {
            self.counts.drop(Drop::Parse, 1);
            return None;
        }
        let instance_name = match (instance_tag, origin.pid) {
            (Some(tag), _) => naming::display_name(tag, curvemon_protocol::validate::MAX_TEXT_LEN)
                .unwrap_or_default(),
            (None, Some(pid)) => self.identity(pid).map_or_else(|| format!("[{pid}]"), |i| i.name),
            (None, None) => String::new(),
        };
        let instance = self.instance(&app, &instance_name, origin);
        let key = (instance, name.clone(), labels.clone());
        if let Some(id) = self.by_key.get(&key) {
            let id = *id;
            let same_kind = self.series.get(&id).is_some_and(|s| {
                std::mem::discriminant(&s.state) == std::mem::discriminant(&state)
                    && s.decl.kind == kind
            });
            if same_kind {
                return Some(id);
            }
            self.counts.drop(Drop::TypeConflict, 1);
            return None;
        }
        let mut help = format!("StatsD {help} {}.", metric.name);
        naming::truncate(&mut help, curvemon_protocol::validate::MAX_HELP_LEN);
        self.declare(&app, instance, &name, help, kind, labels, state)
    }

    /// Takes one scrape of a target: the application and instance it names.
    pub fn scrape(
        &mut self,
        origin: &Origin,
        app: &str,
        instance: &str,
        scraped: Vec<Scraped>,
        now: Instant,
    ) {
        use curvemon_protocol::validate::{MAX_APP_LEN, MAX_HELP_LEN, MAX_TEXT_LEN};
        let Some(app) = naming::display_name(app, MAX_APP_LEN) else { return };
        let instance = naming::display_name(instance, MAX_TEXT_LEN).unwrap_or_default();
        let app = app.as_str();
        let instance = self.instance(app, &instance, origin);
        for series in scraped {
            let mut labels: Vec<(String, String)> = series
                .labels
                .into_iter()
                .filter_map(|(n, v)| Some((naming::label_name(&n)?, naming::label_value(&v))))
                .collect();
            labels.sort();
            labels.dedup_by(|a, b| a.0 == b.0);
            if !naming::acceptable(&series.name) {
                self.counts.drop(Drop::Parse, 1);
                continue;
            }
            let key = (instance, series.name.clone(), labels.clone());
            let id = match self.by_key.get(&key) {
                Some(id) => *id,
                None => {
                    let (kind, state) = match &series.value {
                        ScrapedValue::Counter(_) => {
                            (AppKind::Counter, State::Counter { pending: 0.0, last_total: None })
                        }
                        ScrapedValue::Gauge(_) => {
                            (AppKind::Gauge, State::Gauge { value: f64::NAN })
                        }
                        ScrapedValue::Histogram { bounds, .. } => (
                            AppKind::Histogram { bounds: bounds.clone() },
                            State::Histogram {
                                pending: vec![0.0; bounds.len() + 1],
                                sum: 0.0,
                                last: None,
                            },
                        ),
                        ScrapedValue::Summary { quantiles, .. } => (
                            AppKind::Summary { quantiles: quantiles.clone() },
                            State::Summary {
                                values: vec![f64::NAN; quantiles.len()],
                                sum: 0.0,
                                count: 0.0,
                                last: None,
                            },
                        ),
                    };
                    let mut help = series.help;
                    naming::truncate(&mut help, MAX_HELP_LEN);
                    match self.declare(app, instance, &series.name, help, kind, labels, state) {
                        Some(id) => id,
                        None => continue,
                    }
                }
            };
            let Some(s) = self.series.get_mut(&id) else { continue };
            if apply_scraped(&mut s.state, series.value) {
                s.touched = true;
                s.updated = now;
            } else {
                self.counts.drop(Drop::TypeConflict, 1);
            }
        }
    }

    /// Ends an interval: the values of the series that changed, the
    /// processes' usage, and the declarations and retirements since the
    /// last flush.
    pub fn flush(&mut self, now: Instant) -> Flush {
        self.measure_processes(now);
        let mut points = Vec::new();
        for (id, series) in &mut self.series {
            if !series.touched {
                continue;
            }
            series.touched = false;
            if let Some(value) = take(&mut series.state) {
                points.push(AppPoint { series: *id, value });
            }
        }
        points.sort_by_key(|p| p.series);
        self.expire(now);
        let declarations = self.delta();
        Flush { declarations, points }
    }

    fn measure_processes(&mut self, now: Instant) {
        let watched: Vec<(u32, u32, u32, u32)> = self
            .instances
            .iter()
            .filter_map(|(id, i)| i.process.map(|(cpu, rss, _)| (*id, i.decl.pid, cpu, rss)))
            .collect();
        for (instance, pid, cpu, rss) in watched {
            let Some((seconds, bytes)) = process::usage(&self.roots, pid) else {
                // Gone: stop measuring; its series expire with their TTL.
                if let Some(i) = self.instances.get_mut(&instance) {
                    i.process = None;
                }
                self.identities.remove(&pid);
                continue;
            };
            let previous = self
                .instances
                .get_mut(&instance)
                .and_then(|i| i.process.as_mut())
                .and_then(|(_, _, last)| last.replace(seconds));
            if let Some(s) = self.series.get_mut(&cpu) {
                if let State::Counter { pending, .. } = &mut s.state {
                    *pending += previous.map_or(0.0, |p| (seconds - p).max(0.0));
                }
                s.touched = true;
                s.updated = now;
            }
            if let Some(s) = self.series.get_mut(&rss) {
                s.state = State::Gauge { value: bytes };
                s.touched = true;
                s.updated = now;
            }
        }
    }

    /// Retires series idle past the TTL, and instances left without series.
    fn expire(&mut self, now: Instant) {
        let ttl = self.limits.ttl;
        let idle: Vec<u32> = self
            .series
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.updated) >= ttl)
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            let Some(series) = self.series.remove(&id) else { continue };
            for raw in &series.raw_keys {
                self.by_raw.remove(raw);
            }
            let labels: Vec<(String, String)> =
                series.decl.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
            self.by_key.remove(&(series.decl.instance, series.decl.name.clone(), labels));
            if let Some(n) = self.per_app.get_mut(&series.app) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_app.remove(&series.app);
                }
            }
            self.retired.push(id);
            let instance = series.decl.instance;
            let empty = self.instances.get_mut(&instance).is_some_and(|i| {
                i.series = i.series.saturating_sub(1);
                i.series == 0
            });
            if empty {
                if let Some(i) = self.instances.remove(&instance) {
                    self.instance_ids.remove(&(i.decl.app, i.decl.name, i.decl.source));
                }
                self.retired_instances.push(instance);
            }
        }
        // New ones retired in the same interval need no declaration.
        let retired: HashSet<u32> = self.retired.iter().copied().collect();
        self.new_series.retain(|id| !retired.contains(id));
        let gone: HashSet<u32> = self.retired_instances.iter().copied().collect();
        self.new_instances.retain(|id| !gone.contains(id));
    }

    /// What changed since the last call, as a declaration message.
    fn delta(&mut self) -> Option<AppSeries> {
        if self.new_series.is_empty()
            && self.new_instances.is_empty()
            && self.retired.is_empty()
            && self.retired_instances.is_empty()
        {
            return None;
        }
        let instances = std::mem::take(&mut self.new_instances)
            .into_iter()
            .filter_map(|id| self.instances.get(&id).map(|i| i.decl.clone()))
            .collect();
        let mut declare: Vec<AppSeriesDecl> = std::mem::take(&mut self.new_series)
            .into_iter()
            .filter_map(|id| self.series.get(&id).map(|s| s.decl.clone()))
            .collect();
        declare.sort_by_key(|d| d.id);
        Some(AppSeries {
            full: false,
            instances,
            declare,
            retire: std::mem::take(&mut self.retired),
            retire_instances: std::mem::take(&mut self.retired_instances),
        })
    }

    /// Every live instance and series (after a new connection, or when the
    /// collector asks for the model). Pending deltas are folded in.
    pub fn full(&mut self) -> AppSeries {
        self.new_series.clear();
        self.new_instances.clear();
        self.retired.clear();
        self.retired_instances.clear();
        let mut instances: Vec<AppInstance> =
            self.instances.values().map(|i| i.decl.clone()).collect();
        instances.sort_by_key(|i| i.id);
        let mut declare: Vec<AppSeriesDecl> =
            self.series.values().map(|s| s.decl.clone()).collect();
        declare.sort_by_key(|d| d.id);
        AppSeries {
            full: true,
            instances,
            declare,
            retire: Vec::new(),
            retire_instances: Vec::new(),
        }
    }
}

fn kind_code(kind: Type) -> &'static str {
    match kind {
        Type::Counter => "c",
        Type::Gauge => "g",
        Type::Timer => "ms",
        Type::Histogram => "h",
        Type::Distribution => "d",
        Type::Set => "s",
    }
}

/// The interval's value of a series, and its state made ready for the next.
fn take(state: &mut State) -> Option<AppValue> {
    Some(match state {
        State::Counter { pending, .. } => AppValue::Counter(std::mem::take(pending)),
        State::Gauge { value } if value.is_nan() => return None,
        State::Gauge { value } => AppValue::Gauge(*value),
        State::Set { members } => {
            let n = members.len() as f64;
            members.clear();
            AppValue::Gauge(n)
        }
        State::Sketch { sketch, .. } => AppValue::Distribution(std::mem::take(sketch)),
        State::Histogram { pending, sum, .. } => {
            let counts = pending.clone();
            pending.iter_mut().for_each(|c| *c = 0.0);
            AppValue::Histogram { counts, sum: std::mem::take(sum) }
        }
        State::Summary { values, sum, count, .. } => AppValue::Summary {
            values: values.clone(),
            sum: std::mem::take(sum),
            count: std::mem::take(count),
        },
    })
}

/// An increase between two totals: a total that went down was reset (the
/// application restarted) and its new value is the increase. The first
/// total seen is the baseline: counting starts when the agent first sees
/// a series, so a restarted agent never counts a total twice.
fn increase(last: Option<f64>, now: f64) -> f64 {
    match last {
        None => 0.0,
        Some(last) if now >= last => now - last,
        Some(_) => now,
    }
}

/// Applies a scraped value; false when it does not fit the series' kind.
fn apply_scraped(state: &mut State, value: ScrapedValue) -> bool {
    match (state, value) {
        (State::Counter { pending, last_total }, ScrapedValue::Counter(total)) => {
            *pending += increase(*last_total, total);
            *last_total = Some(total);
        }
        (State::Gauge { value }, ScrapedValue::Gauge(v)) => *value = v,
        (
            State::Histogram { pending, sum, last },
            ScrapedValue::Histogram { cumulative, sum: total_sum, .. },
        ) => {
            if pending.len() != cumulative.len() {
                return false;
            }
            // Per-bucket counts from cumulative ones.
            let per_bucket: Vec<f64> = cumulative
                .iter()
                .enumerate()
                .map(|(i, c)| c - if i == 0 { 0.0 } else { cumulative[i - 1] })
                .collect();
            match last.as_ref() {
                Some((previous, previous_sum)) if previous.len() == per_bucket.len() => {
                    let reset = per_bucket.iter().zip(previous).any(|(now, was)| now < was);
                    for (p, (now, was)) in pending.iter_mut().zip(per_bucket.iter().zip(previous)) {
                        *p += if reset { *now } else { now - was };
                    }
                    *sum += if reset { total_sum } else { total_sum - previous_sum };
                }
                _ => {}
            }
            *last = Some((per_bucket, total_sum));
        }
        (
            State::Summary { values, sum, count, last },
            ScrapedValue::Summary {
                values: now_values, sum: total_sum, count: total_count, ..
            },
        ) => {
            if values.len() != now_values.len() {
                return false;
            }
            *values = now_values;
            if let Some((previous_sum, previous_count)) = *last {
                let reset = total_count < previous_count;
                *sum += if reset { total_sum } else { total_sum - previous_sum };
                *count += if reset { total_count } else { total_count - previous_count };
            }
            *last = Some((total_sum, total_count));
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::statsd::line;

    fn apps(limits: Limits) -> Apps {
        Apps::new(limits, "statsd".into(), Roots::new("/proc"))
    }

    fn udp() -> Origin {
        Origin { source: "statsd-udp".into(), pid: None }
    }

    fn send(apps: &mut Apps, line: &str, now: Instant) {
        apps.statsd(&udp(), &line::parse(line).unwrap(), now);
    }

    #[test]
    fn statsd_lines_become_declared_series_and_interval_values() {
        let mut a = apps(Limits::default());
        let t = Instant::now();
        send(&mut a, "shop.requests:1|c", t);
        send(&mut a, "shop.requests:2|c|@0.5", t);
        send(&mut a, "shop.queue:5|g", t);
        send(&mut a, "shop.queue:-2|g", t);
        send(&mut a, "shop.users:ann|s", t);
        send(&mut a, "shop.users:bob:ann|s", t);
        send(&mut a, "shop.checkout:250|ms", t);
        send(&mut a, "shop.size:3:4|d|#app:shop,env:prod", t);
        let flush = a.flush(t);
        let decl = flush.declarations.unwrap();
        assert!(!decl.full);
        assert_eq!(decl.instances.len(), 1);
        assert_eq!(decl.instances[0].app, "shop");
        let names: Vec<&str> = decl.declare.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["requests_total", "queue", "users", "checkout_seconds", "size"]);
        assert_eq!(decl.declare[4].labels, vec![Label::new("env", "prod")]);
        let value = |name: &str| {
            let id = decl.declare.iter().find(|d| d.name == name).unwrap().id;
            flush.points.iter().find(|p| p.series == id).unwrap().value.clone()
        };
        assert_eq!(value("requests_total"), AppValue::Counter(5.0), "1 + 2/0.5");
        assert_eq!(value("queue"), AppValue::Gauge(3.0));
        assert_eq!(value("users"), AppValue::Gauge(2.0));
        let AppValue::Distribution(timer) = value("checkout_seconds") else { panic!() };
        assert_eq!((timer.count, timer.sum), (1, 0.25), "milliseconds become seconds");
        let AppValue::Distribution(size) = value("size") else { panic!() };
        assert_eq!(size.count, 2);
        assert_eq!(a.counts.lines, 8);

        // The next interval: only what changed, no new declarations.
        send(&mut a, "shop.requests:1|c", t);
        let next = a.flush(t);
        assert!(next.declarations.is_none());
        assert_eq!(next.points.len(), 1);
        assert_eq!(next.points[0].value, AppValue::Counter(1.0));
    }

    #[test]
    fn caps_conflicts_and_ttl() {
        let limits = Limits {
            max_series: 3,
            max_series_per_app: 2,
            ttl: Duration::from_secs(60),
            max_set_members: 2,
        };
        let mut a = apps(limits);
        let t = Instant::now();
        send(&mut a, "a.x:1|c", t);
        send(&mut a, "a.y:1|c", t);
        send(&mut a, "a.z:1|c", t); // a has 2: refused
        send(&mut a, "b.x:1|g", t);
        send(&mut a, "c.x:1|g", t); // 3 in all: refused
        send(&mut a, "b.x:1|s", t); // same name, other type
        send(&mut a, "b.x:1|c", t); // b.x_total: over the cap
        let dropped =
            |a: &Apps, d: Drop| a.counts.dropped[Drop::ALL.iter().position(|x| *x == d).unwrap()];
        assert_eq!(dropped(&a, Drop::SeriesCap), 3);
        assert_eq!(dropped(&a, Drop::TypeConflict), 1);
        assert_eq!(a.series_count(), 3);
        a.flush(t);
        // Idle past the TTL: retired, with their instances.
        send(&mut a, "a.x:1|c", t + Duration::from_secs(30));
        let later = a.flush(t + Duration::from_secs(61));
        let d = later.declarations.unwrap();
        assert_eq!(d.retire.len(), 2, "a.y and b.x");
        assert_eq!(d.retire_instances.len(), 1, "b");
        assert_eq!(a.series_count(), 1);
        send(&mut a, "c.x:1|g", t + Duration::from_secs(61));
        assert_eq!(a.series_count(), 2, "room again");
        let full = a.full();
        assert!(full.full);
        assert_eq!(full.declare.len(), 2);
        assert_eq!(full.instances.len(), 2);
    }

    /// Found by fuzzing: a control character in what becomes the
    /// application's name made the collector refuse every declaration.
    #[test]
    fn what_applications_send_always_passes_the_collectors_checks() {
        let mut a = apps(Limits::default());
        let t = Instant::now();
        send(&mut a, "sh\u{0}op.x:1|c", t);
        send(&mut a, "\u{1}.x:1|c", t);
        send(&mut a, "y:1|c|#app:\u{7},instance:i\u{0}", t);
        send(&mut a, &format!("z.w:1|c|#k:{}", "v".repeat(5000)), t);
        let decl = a.flush(t).declarations.unwrap();
        assert_eq!(curvemon_protocol::validate::app_series(&decl), Ok(()));
        let apps: Vec<&str> = decl.instances.iter().map(|i| i.app.as_str()).collect();
        assert_eq!(apps, ["sh_op", "z"], "names made safe; nothing printable left: dropped");
        assert_eq!(a.counts.dropped[0], 2);
    }

    #[test]
    fn tags_in_another_order_are_the_same_series() {
        let mut a = apps(Limits::default());
        let t = Instant::now();
        send(&mut a, "s.x:1|c|#a:1,b:2", t);
        send(&mut a, "s.x:1|c|#b:2,a:1", t);
        send(&mut a, "s.x:1|c|#host:h1", t);
        let flush = a.flush(t);
        let decl = flush.declarations.unwrap();
        assert_eq!(decl.declare.len(), 2);
        assert_eq!(decl.declare[1].labels, vec![Label::new("exported_host", "h1")]);
        assert_eq!(flush.points[0].value, AppValue::Counter(2.0));
    }

    #[test]
    fn scraped_totals_become_increases() {
        use crate::sources::scrape::text::{Scraped, ScrapedValue};
        let mut a = apps(Limits::default());
        let origin = Origin { source: "scrape http://127.0.0.1:9100/metrics".into(), pid: None };
        let t = Instant::now();
        let scrape = |total: f64, buckets: [f64; 3]| {
            vec![
                Scraped {
                    name: "jobs_total".into(),
                    help: "h".into(),
                    labels: vec![("queue".into(), "a".into())],
                    value: ScrapedValue::Counter(total),
                },
                Scraped {
                    name: "latency_seconds".into(),
                    help: "h".into(),
                    labels: vec![],
                    value: ScrapedValue::Histogram {
                        bounds: vec![0.1, 1.0],
                        cumulative: buckets.to_vec(),
                        sum: buckets[2],
                    },
                },
            ]
        };
        a.scrape(&origin, "worker", "127.0.0.1:9100", scrape(100.0, [1.0, 2.0, 3.0]), t);
        let first = a.flush(t);
        assert_eq!(
            first.points[0].value,
            AppValue::Counter(0.0),
            "the first total is the baseline"
        );
        a.scrape(&origin, "worker", "127.0.0.1:9100", scrape(107.0, [1.0, 4.0, 6.0]), t);
        let second = a.flush(t);
        assert_eq!(second.points[0].value, AppValue::Counter(7.0));
        assert_eq!(
            second.points[1].value,
            AppValue::Histogram { counts: vec![0.0, 2.0, 1.0], sum: 3.0 }
        );
        a.scrape(&origin, "worker", "127.0.0.1:9100", scrape(5.0, [0.0, 1.0, 1.0]), t);
        assert_eq!(a.flush(t).points[0].value, AppValue::Counter(5.0), "a reset counts anew");
    }
}
