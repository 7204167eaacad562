//! Application series (version 2): what applications report through the
//! agent (StatsD, scraped `/metrics`), declared once and then sent as
//! values by id.
//!
//! Host series have a fixed schema, sent whole in the model. Application
//! series come and go (a new endpoint label, an idle series expiring), and
//! a host may have thousands. So each is declared once, with a numeric id
//! the agent chooses, in an [`AppSeries`] message; later declarations and
//! retirements are deltas. A [`Sample`] carries the host's values and, for
//! the application series that changed in the interval, `(id, value)`
//! pairs: an idle series costs nothing on the wire, and a new one costs
//! one declaration, not a new model.
//!
//! Ids are the agent process's: a new hello (a restarted agent) forgets
//! them. On every new connection, and whenever the collector asks for the
//! model, the agent declares every live series again with `full: true`.
//!
//! Counters travel as increases, never as totals: the collector adds them
//! up, so a restarted agent or application does not reset the series the
//! collector exports.

use serde::{Deserialize, Serialize};

use crate::{model::Label, sketch::Sketch};

/// Agent → collector: application instances and series declared or
/// retired since the last such message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSeries {
    /// Every live instance and series is listed: forget any other.
    pub full: bool,
    /// Instances new since the last message (or all of them, when `full`).
    pub instances: Vec<AppInstance>,
    /// Series new since the last message (or all of them, when `full`).
    pub declare: Vec<AppSeriesDecl>,
    /// Ids of series that ended (idle past their time to live).
    pub retire: Vec<u32>,
    /// Ids of instances that ended (all their series are retired too).
    pub retire_instances: Vec<u32>,
}

/// One running copy of an application on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInstance {
    /// The agent's id for the instance.
    pub id: u32,
    /// The application's name (`app` label).
    pub app: String,
    /// The instance's name (`instance` label): an `instance` tag, the
    /// sender's systemd unit or `comm[pid]`, the scrape target; empty for
    /// "the application on this host".
    pub name: String,
    /// The sender's process, where known (Unix socket credentials); 0 if not.
    pub pid: u32,
    /// The sender's systemd unit, container scope or `[[process]]` group,
    /// where known; empty if not.
    pub unit: String,
    /// How it reports: `statsd-udp`, `statsd-unix`, `statsd-stream`, or
    /// `scrape <url>`.
    pub source: String,
}

/// How an application series behaves, and how its values travel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AppKind {
    /// Values are increases since the series' previous point.
    Counter,
    /// Values are the current level.
    Gauge,
    /// Values are [`Sketch`]es of the observations since the previous point.
    Distribution,
    /// A classic histogram with these upper bounds (ascending, `+Inf`
    /// implied): values are per-bucket increases.
    Histogram {
        /// The `le` bounds, without `+Inf`.
        bounds: Vec<f64>,
    },
    /// A summary with these quantiles: values are its current quantiles
    /// and the increases of its sum and count.
    Summary {
        /// The `quantile` labels, ascending.
        quantiles: Vec<f64>,
    },
}

/// One application series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSeriesDecl {
    /// The agent's id for the series.
    pub id: u32,
    /// The [`AppInstance::id`] it belongs to.
    pub instance: u32,
    /// The exported name (`requests_total`, `request_seconds`).
    pub name: String,
    /// `# HELP` text.
    pub help: String,
    /// Its kind.
    pub kind: AppKind,
    /// Its labels (tags), besides `app`, `instance` and `host`.
    pub labels: Vec<Label>,
}

/// Agent → collector: one interval's sample, the host's and the
/// applications'. Replaces version 1's `Metrics` for agents that speak
/// version 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Increases by one per sample for the life of the agent process; a
    /// gap means lost samples.
    pub seq: u64,
    /// When the sample was taken, Unix milliseconds (agent's clock).
    pub taken_at_ms: u64,
    /// The host's values, in the order of its model's schema.
    pub host: HostValues,
    /// The application series that changed in the interval.
    pub apps: Vec<AppPoint>,
}

/// The host part of a [`Sample`]: as a version 1 `Metrics` carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostValues {
    /// The [`crate::Schema::revision`] these values follow.
    pub schema_revision: u64,
    /// One value per series, in schema order; NaN where unreadable.
    pub values: Vec<f64>,
}

/// One application series' value in a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppPoint {
    /// The [`AppSeriesDecl::id`].
    pub series: u32,
    /// The value, of the series' kind.
    pub value: AppValue,
}

/// A value of one of the [`AppKind`]s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AppValue {
    /// [`AppKind::Counter`]: the increase since the previous point (≥ 0).
    Counter(f64),
    /// [`AppKind::Gauge`]: the level.
    Gauge(f64),
    /// [`AppKind::Distribution`]: the observations since the previous point.
    Distribution(Sketch),
    /// [`AppKind::Histogram`]: per-bucket increases (one more than the
    /// bounds: the last is `+Inf`), and the increase of the sum.
    Histogram {
        /// Increases per bucket, not cumulative.
        counts: Vec<f64>,
        /// Increase of the sum of observations.
        sum: f64,
    },
    /// [`AppKind::Summary`]: the quantiles now, and the increases of the
    /// sum and count.
    Summary {
        /// One value per declared quantile.
        values: Vec<f64>,
        /// Increase of the sum.
        sum: f64,
        /// Increase of the count.
        count: f64,
    },
}

impl AppValue {
    /// Whether this value fits a series of `kind`.
    pub fn fits(&self, kind: &AppKind) -> bool {
        match (self, kind) {
            (AppValue::Counter(v), AppKind::Counter) => v.is_finite() && *v >= 0.0,
            (AppValue::Gauge(_), AppKind::Gauge) => true,
            (AppValue::Distribution(s), AppKind::Distribution) => s.is_consistent(),
            (AppValue::Histogram { counts, sum }, AppKind::Histogram { bounds }) => {
                counts.len() == bounds.len() + 1
                    && counts.iter().all(|c| c.is_finite() && *c >= 0.0)
                    && sum.is_finite()
            }
            (AppValue::Summary { values, sum, count }, AppKind::Summary { quantiles }) => {
                values.len() == quantiles.len()
                    && sum.is_finite()
                    && count.is_finite()
                    && *count >= 0.0
            }
            _ => false,
        }
    }
}
