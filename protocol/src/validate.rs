//! What a collector accepts of what an agent declares: names, labels,
//! sizes. Checked once, where a hello or model arrives, so that everything
//! downstream (the Prometheus exposition, the API, the dashboard) can trust
//! it. One agent's bad model must never break the scrape of the whole
//! fleet: Prometheus rejects an entire exposition for one bad name.
//!
//! The rules (also in `docs/protocol.md`):
//! - metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names
//!   `[a-zA-Z_][a-zA-Z0-9_]*` and do not start with `__` (Prometheus
//!   reserves those);
//! - labels the collector adds itself ([`RESERVED_LABELS`]) and names it
//!   generates itself ([`RESERVED_PREFIXES`]) are not the agent's to use;
//! - a family appears once, a label once per series, a label set once per
//!   family;
//! - counts and lengths stay under the limits below;
//! - the schema's revision is the hash of its content.
//!
//! Label values and help texts may hold any text: the exposition escapes
//! them.

use std::collections::HashSet;

use thiserror::Error;

use crate::{
    AppKind, AppSeries, Backfill, CheckResults, Checks, Gap, Hello, Model, Resume, Schema,
};

/// Families in one model.
pub const MAX_FAMILIES: usize = 10_000;
/// Series in one model (a metrics message carries 8 bytes per series, so
/// the frame limit allows about 130,000).
pub const MAX_SERIES: usize = 100_000;
/// Labels of one series.
pub const MAX_LABELS: usize = 32;
/// Bytes of a metric name.
pub const MAX_NAME_LEN: usize = 200;
/// Bytes of a label name.
pub const MAX_LABEL_NAME_LEN: usize = 100;
/// Bytes of a label value.
pub const MAX_LABEL_VALUE_LEN: usize = 1024;
/// Bytes of a help text.
pub const MAX_HELP_LEN: usize = 1024;
/// Bytes of a host name (DNS's limit).
pub const MAX_HOSTNAME_LEN: usize = 253;
/// Bytes of the other texts of a hello or model (kernel, OS, CPU model, ...).
pub const MAX_TEXT_LEN: usize = 256;

/// Labels the collector adds to every series of a host or application.
pub const RESERVED_LABELS: [&str; 2] = ["host", "app"];

/// Labels the collector adds to every application series.
pub const RESERVED_APP_LABELS: [&str; 3] = ["host", "app", "instance"];

/// Instances one [`AppSeries`] may declare.
pub const MAX_INSTANCES: usize = 10_000;
/// Bytes of an application's name.
pub const MAX_APP_LEN: usize = 128;
/// `le` bounds of a histogram, or quantiles of a summary.
pub const MAX_BOUNDS: usize = 64;

/// Checks one agent may declare.
pub const MAX_CHECKS: usize = 256;
/// Bytes of a check's name.
pub const MAX_CHECK_NAME_LEN: usize = 64;
/// Bytes of a check result's detail.
pub const MAX_DETAIL_LEN: usize = 1024;

/// Prefixes of the names the collector itself exports.
pub const RESERVED_PREFIXES: [&str; 4] =
    ["curvemon_host_", "curvemon_collector_", "curvemon_app_", "curvemon_check_"];

/// What is wrong with a hello or model. The texts quote at most the first
/// 64 characters of what the agent sent, escaped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    /// A metric name Prometheus cannot represent.
    #[error("metric name {name} is not [a-zA-Z_:][a-zA-Z0-9_:]*")]
    MetricName {
        /// The name, quoted.
        name: String,
    },
    /// A metric name with a prefix the collector uses for its own series.
    #[error("metric name {name} starts with {prefix:?}, which the collector reserves")]
    ReservedName {
        /// The name, quoted.
        name: String,
        /// The reserved prefix.
        prefix: &'static str,
    },
    /// A label name Prometheus cannot represent or reserves.
    #[error(
        "label name {label} in family {family} is not [a-zA-Z_][a-zA-Z0-9_]*, or starts with __"
    )]
    LabelName {
        /// The family, quoted.
        family: String,
        /// The label name, quoted.
        label: String,
    },
    /// A label the collector adds itself.
    #[error("label {label:?} in family {family} is added by the collector; rename it")]
    ReservedLabel {
        /// The family, quoted.
        family: String,
        /// The reserved label.
        label: &'static str,
    },
    /// The same family name twice.
    #[error("family {name} appears more than once")]
    DuplicateFamily {
        /// The name, quoted.
        name: String,
    },
    /// The same label twice in one series.
    #[error("label {label} appears twice in a series of {family}")]
    DuplicateLabel {
        /// The family, quoted.
        family: String,
        /// The label name, quoted.
        label: String,
    },
    /// Two series of a family with the same labels.
    #[error("family {family} has two series labelled {{{labels}}}")]
    DuplicateSeries {
        /// The family, quoted.
        family: String,
        /// The labels, as `a="x",b="y"` (cut at 64 characters).
        labels: String,
    },
    /// More of something than the collector accepts.
    #[error("{count} {what}; at most {max} are accepted")]
    TooMany {
        /// What was counted ("families", "series", "labels in a series of x").
        what: String,
        /// How many there are.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A text longer than the collector accepts.
    #[error("{what} is {len} bytes; at most {max} are accepted")]
    TooLong {
        /// Which text.
        what: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A host name that is empty or holds control characters.
    #[error("host name {name} is empty or holds control characters")]
    Hostname {
        /// The name, quoted.
        name: String,
    },
    /// An application name that is empty or holds control characters.
    #[error("application name {name} is empty or holds control characters")]
    AppName {
        /// The name, quoted.
        name: String,
    },
    /// An id used twice in one declaration.
    #[error("{what} id {id} is declared twice")]
    DuplicateId {
        /// "series" or "instance".
        what: &'static str,
        /// The id.
        id: u32,
    },
    /// Histogram bounds or summary quantiles that are not finite and
    /// increasing (quantiles also within 0..=1).
    #[error("the {what} of {series} are not finite and increasing")]
    Bounds {
        /// "bounds" or "quantiles".
        what: &'static str,
        /// The series, quoted.
        series: String,
    },
    /// A check name outside `[A-Za-z0-9_.:-]{1,64}`.
    #[error("check name {name} is not 1 to 64 of [A-Za-z0-9_.:-]")]
    CheckName {
        /// The name, quoted.
        name: String,
    },
    /// Two checks of one name.
    #[error("check {name} is declared twice")]
    DuplicateCheck {
        /// The name, quoted.
        name: String,
    },
    /// A check result that is not a duration, or names no declared check.
    #[error("a result of check id {id} {problem}")]
    CheckResult {
        /// The id it names.
        id: u32,
        /// What is wrong.
        problem: &'static str,
    },
    /// A delivery message (version 4) that contradicts itself.
    #[error("{problem}")]
    Delivery {
        /// What is wrong.
        problem: &'static str,
    },
    /// The schema's revision is not the hash of its content.
    #[error("schema revision {claimed:016x} does not match its content ({computed:016x})")]
    Revision {
        /// The revision the model states.
        claimed: u64,
        /// The revision of its content.
        computed: u64,
    },
}

impl ModelError {
    /// A short, fixed word for counters (`reason` label).
    pub fn reason(&self) -> &'static str {
        match self {
            ModelError::MetricName { .. } => "metric_name",
            ModelError::ReservedName { .. } => "reserved_name",
            ModelError::LabelName { .. } => "label_name",
            ModelError::ReservedLabel { .. } => "reserved_label",
            ModelError::DuplicateFamily { .. } => "duplicate_family",
            ModelError::DuplicateLabel { .. } => "duplicate_label",
            ModelError::DuplicateSeries { .. } => "duplicate_series",
            ModelError::TooMany { .. } => "too_many",
            ModelError::TooLong { .. } => "too_long",
            ModelError::Hostname { .. } => "hostname",
            ModelError::AppName { .. } => "app_name",
            ModelError::DuplicateId { .. } => "duplicate_id",
            ModelError::Bounds { .. } => "bounds",
            ModelError::Revision { .. } => "revision",
            ModelError::CheckName { .. } => "check_name",
            ModelError::DuplicateCheck { .. } => "duplicate_check",
            ModelError::CheckResult { .. } => "check_result",
            ModelError::Delivery { .. } => "delivery",
        }
    }

    /// Every value [`ModelError::reason`] can return.
    pub const REASONS: [&'static str; 18] = [
        "metric_name",
        "reserved_name",
        "label_name",
        "reserved_label",
        "duplicate_family",
        "duplicate_label",
        "duplicate_series",
        "too_many",
        "too_long",
        "hostname",
        "app_name",
        "duplicate_id",
        "bounds",
        "revision",
        "check_name",
        "duplicate_check",
        "check_result",
        "delivery",
    ];
}

/// `text` quoted and escaped, cut at 64 characters, for messages.
fn shown(text: &str) -> String {
    let mut cut: String = text.chars().take(64).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
}

fn text(what: &str, value: &str, max: usize) -> Result<(), ModelError> {
    if value.len() > max {
        return Err(ModelError::TooLong { what: what.to_string(), len: value.len(), max });
    }
    Ok(())
}

/// Checks a host name: 1 to 253 bytes, no control characters.
///
/// # Errors
/// [`ModelError::Hostname`] or [`ModelError::TooLong`].
pub fn hostname(name: &str) -> Result<(), ModelError> {
    text("the host name", name, MAX_HOSTNAME_LEN)?;
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(ModelError::Hostname { name: shown(name) });
    }
    Ok(())
}

/// Checks a hello.
///
/// # Errors
/// The first problem found.
pub fn hello(hello: &Hello) -> Result<(), ModelError> {
    hostname(&hello.hostname)?;
    text("the agent version", &hello.agent_version, MAX_TEXT_LEN)?;
    text("the machine id", &hello.machine_id, MAX_TEXT_LEN)?;
    text("the boot id", &hello.boot_id, MAX_TEXT_LEN)
}

/// Checks a model: its texts and its schema.
///
/// # Errors
/// The first problem found.
pub fn model(model: &Model) -> Result<(), ModelError> {
    hostname(&model.hostname)?;
    for (what, value) in [
        ("the machine id", &model.machine_id),
        ("the boot id", &model.boot_id),
        ("the kernel", &model.kernel),
        ("the OS name", &model.os),
        ("the CPU model", &model.cpu_model),
        ("the agent version", &model.agent_version),
    ] {
        text(what, value, MAX_TEXT_LEN)?;
    }
    schema(&model.schema)
}

/// Checks a metric name: syntax, length and the reserved prefixes.
fn metric_name(name: &str) -> Result<(), ModelError> {
    text("a metric name", name, MAX_NAME_LEN)?;
    if !is_metric_name(name) {
        return Err(ModelError::MetricName { name: shown(name) });
    }
    if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| name.starts_with(*p)) {
        return Err(ModelError::ReservedName { name: shown(name), prefix });
    }
    Ok(())
}

/// Checks one series' labels (syntax, reserved names, lengths, duplicates)
/// and returns them sorted, for duplicate-series checks.
fn labels<'a>(
    name: &str,
    labels: &'a [crate::Label],
    reserved: &[&'static str],
) -> Result<Vec<(&'a str, &'a str)>, ModelError> {
    if labels.len() > MAX_LABELS {
        return Err(ModelError::TooMany {
            what: format!("labels in a series of {}", shown(name)),
            count: labels.len(),
            max: MAX_LABELS,
        });
    }
    let mut set: Vec<(&str, &str)> = Vec::with_capacity(labels.len());
    for label in labels {
        text(&format!("a label name in {}", shown(name)), &label.name, MAX_LABEL_NAME_LEN)?;
        if !is_label_name(&label.name) {
            return Err(ModelError::LabelName { family: shown(name), label: shown(&label.name) });
        }
        if let Some(reserved) = reserved.iter().find(|r| **r == label.name) {
            return Err(ModelError::ReservedLabel { family: shown(name), label: reserved });
        }
        text(
            &format!("the value of label {} in {}", label.name, shown(name)),
            &label.value,
            MAX_LABEL_VALUE_LEN,
        )?;
        set.push((&label.name, &label.value));
    }
    set.sort_unstable();
    if let Some(pair) = set.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(ModelError::DuplicateLabel { family: shown(name), label: shown(pair[0].0) });
    }
    Ok(set)
}

fn duplicate_series(name: &str, labels: &[crate::Label]) -> ModelError {
    let text =
        labels.iter().map(|l| format!("{}={:?}", l.name, l.value)).collect::<Vec<_>>().join(",");
    let mut labels: String = text.chars().take(64).collect();
    if labels.len() < text.len() {
        labels.push('…');
    }
    ModelError::DuplicateSeries { family: shown(name), labels }
}

/// Checks an [`AppSeries`]: instance texts, series names and labels (the
/// collector adds `host`, `app` and `instance`), kinds, duplicate ids and
/// series, limits. That a series' instance exists, and the host's total,
/// the collector checks against what it already knows.
///
/// # Errors
/// The first problem found.
pub fn app_series(message: &AppSeries) -> Result<(), ModelError> {
    if message.instances.len() > MAX_INSTANCES {
        return Err(ModelError::TooMany {
            what: "instances".into(),
            count: message.instances.len(),
            max: MAX_INSTANCES,
        });
    }
    if message.declare.len() > MAX_SERIES {
        return Err(ModelError::TooMany {
            what: "series".into(),
            count: message.declare.len(),
            max: MAX_SERIES,
        });
    }
    let mut ids = HashSet::with_capacity(message.instances.len());
    for instance in &message.instances {
        text("an application name", &instance.app, MAX_APP_LEN)?;
        if instance.app.is_empty() || instance.app.chars().any(char::is_control) {
            return Err(ModelError::AppName { name: shown(&instance.app) });
        }
        for (what, value) in [
            ("an instance name", &instance.name),
            ("an instance's unit", &instance.unit),
            ("an instance's source", &instance.source),
        ] {
            text(what, value, MAX_TEXT_LEN)?;
        }
        if !ids.insert(instance.id) {
            return Err(ModelError::DuplicateId { what: "instance", id: instance.id });
        }
    }
    let mut ids = HashSet::with_capacity(message.declare.len());
    let mut seen = HashSet::with_capacity(message.declare.len());
    for series in &message.declare {
        let name = series.name.as_str();
        metric_name(name)?;
        text(&format!("the help of {}", shown(name)), &series.help, MAX_HELP_LEN)?;
        let set = labels(name, &series.labels, &RESERVED_APP_LABELS)?;
        let increasing =
            |v: &[f64]| v.windows(2).all(|w| w[0] < w[1]) && v.iter().all(|x| x.is_finite());
        match &series.kind {
            AppKind::Histogram { bounds } if bounds.len() > MAX_BOUNDS || !increasing(bounds) => {
                return Err(ModelError::Bounds { what: "bounds", series: shown(name) });
            }
            AppKind::Summary { quantiles }
                if quantiles.len() > MAX_BOUNDS
                    || !increasing(quantiles)
                    || quantiles.iter().any(|q| !(0.0..=1.0).contains(q)) =>
            {
                return Err(ModelError::Bounds { what: "quantiles", series: shown(name) });
            }
            _ => {}
        }
        if !ids.insert(series.id) {
            return Err(ModelError::DuplicateId { what: "series", id: series.id });
        }
        if !seen.insert((series.instance, name, set)) {
            return Err(duplicate_series(name, &series.labels));
        }
    }
    Ok(())
}

/// A check's name: 1 to 64 of `[A-Za-z0-9_.:-]`, so that it reads the
/// same in a label, a log line and a URL.
///
/// # Errors
/// [`ModelError::CheckName`].
pub fn check_name(name: &str) -> Result<(), ModelError> {
    let ok = (1..=MAX_CHECK_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if ok { Ok(()) } else { Err(ModelError::CheckName { name: shown(name) }) }
}

/// Checks a declaration of checks: names, ids and names unique, texts and
/// counts within limits, a timeout and an interval.
///
/// # Errors
/// The first problem found.
pub fn checks(message: &Checks) -> Result<(), ModelError> {
    if message.checks.len() > MAX_CHECKS {
        return Err(ModelError::TooMany {
            what: "checks".into(),
            count: message.checks.len(),
            max: MAX_CHECKS,
        });
    }
    let mut ids = HashSet::with_capacity(message.checks.len());
    let mut names = HashSet::with_capacity(message.checks.len());
    for check in &message.checks {
        check_name(&check.name)?;
        text(&format!("the target of check {}", shown(&check.name)), &check.target, MAX_TEXT_LEN)?;
        if !ids.insert(check.id) {
            return Err(ModelError::DuplicateId { what: "check", id: check.id });
        }
        if !names.insert(check.name.as_str()) {
            return Err(ModelError::DuplicateCheck { name: shown(&check.name) });
        }
        if check.interval_ms == 0 || check.timeout_ms == 0 {
            return Err(ModelError::CheckResult {
                id: check.id,
                problem: "has no interval or timeout",
            });
        }
    }
    Ok(())
}

/// Checks probe results on their own (that their ids are declared, the
/// collector checks against what it knows): durations finite and not
/// negative, texts within limits.
///
/// # Errors
/// The first problem found.
pub fn check_results(message: &CheckResults) -> Result<(), ModelError> {
    if message.results.len() > MAX_CHECKS * 16 {
        return Err(ModelError::TooMany {
            what: "check results".into(),
            count: message.results.len(),
            max: MAX_CHECKS * 16,
        });
    }
    let duration = |s: f64| s.is_finite() && s >= 0.0;
    for result in &message.results {
        if !duration(result.seconds) || !result.phases.iter().all(|p| duration(p.seconds)) {
            return Err(ModelError::CheckResult { id: result.id, problem: "has a bad duration" });
        }
        if result.phases.len() > crate::Phase::ALL.len() {
            return Err(ModelError::CheckResult { id: result.id, problem: "has too many phases" });
        }
        text("a check's server", &result.server, MAX_TEXT_LEN)?;
        if let Some(failure) = &result.failure {
            text("a check's failure detail", &failure.detail, MAX_DETAIL_LEN)?;
        }
    }
    Ok(())
}

/// Samples in one `Backfill`.
pub const MAX_BACKFILL: usize = 1_000;

/// Checks a `Resume`: an epoch, and the oldest held sample not after the
/// next one.
///
/// # Errors
/// [`ModelError::Delivery`].
pub fn resume(message: &Resume) -> Result<(), ModelError> {
    if message.epoch == 0 || message.oldest_seq > message.next_seq || message.oldest_seq == 0 {
        return Err(ModelError::Delivery {
            problem: "a resume without an epoch or with its oldest sample after its next",
        });
    }
    Ok(())
}

/// Checks a `Backfill`: at most [`MAX_BACKFILL`] samples, in increasing
/// order, none empty beyond the series limit.
///
/// # Errors
/// [`ModelError::Delivery`] or [`ModelError::TooMany`].
pub fn backfill(message: &Backfill) -> Result<(), ModelError> {
    if message.samples.len() > MAX_BACKFILL {
        return Err(ModelError::TooMany {
            what: "backfilled samples".into(),
            count: message.samples.len(),
            max: MAX_BACKFILL,
        });
    }
    if message.samples.windows(2).any(|w| w[0].seq >= w[1].seq) {
        return Err(ModelError::Delivery { problem: "backfilled samples out of order" });
    }
    if message.samples.iter().any(|s| s.values.len() > MAX_SERIES || s.seq == 0) {
        return Err(ModelError::Delivery {
            problem: "a backfilled sample with seq 0 or too many values",
        });
    }
    Ok(())
}

/// Checks a `Gap`: a range of samples and of times, in order.
///
/// # Errors
/// [`ModelError::Delivery`].
pub fn gap(message: &Gap) -> Result<(), ModelError> {
    if message.from_seq == 0 || message.from_seq > message.to_seq || message.from_ms > message.to_ms
    {
        return Err(ModelError::Delivery { problem: "a gap whose end is before its start" });
    }
    Ok(())
}

/// Checks a schema: names, labels, duplicates, limits, revision.
///
/// # Errors
/// The first problem found.
pub fn schema(schema: &Schema) -> Result<(), ModelError> {
    if schema.families.len() > MAX_FAMILIES {
        return Err(ModelError::TooMany {
            what: "families".into(),
            count: schema.families.len(),
            max: MAX_FAMILIES,
        });
    }
    let series: usize = schema.families.iter().map(|f| f.series.len()).sum();
    if series > MAX_SERIES {
        return Err(ModelError::TooMany { what: "series".into(), count: series, max: MAX_SERIES });
    }
    let mut names = HashSet::with_capacity(schema.families.len());
    for family in &schema.families {
        let name = family.name.as_str();
        metric_name(name)?;
        if !names.insert(name) {
            return Err(ModelError::DuplicateFamily { name: shown(name) });
        }
        text(&format!("the help of {}", shown(name)), &family.help, MAX_HELP_LEN)?;
        let mut seen = HashSet::with_capacity(family.series.len());
        for series in &family.series {
            if !seen.insert(labels(name, series, &RESERVED_LABELS)?) {
                return Err(duplicate_series(name, series));
            }
        }
    }
    let computed = Schema::compute_revision(&schema.families);
    if computed != schema.revision {
        return Err(ModelError::Revision { claimed: schema.revision, computed });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Family, Kind, Label};

    fn family(name: &str, series: Vec<Vec<Label>>) -> Family {
        Family { name: name.into(), help: "h".into(), kind: Kind::Gauge, series }
    }

    fn check(families: Vec<Family>) -> Result<(), ModelError> {
        schema(&Schema::new(families))
    }

    #[test]
    fn names() {
        for good in ["a", "_a", ":a", "node_cpu_seconds_total", "a:b_c9"] {
            assert!(is_metric_name(good), "{good}");
        }
        for bad in ["", "9a", "a-b", "a\"b", "a b", "a\nb", "é"] {
            assert!(!is_metric_name(bad), "{bad:?}");
        }
        for good in ["a", "_a", "cpu", "a9_"] {
            assert!(is_label_name(good), "{good}");
        }
        for bad in ["", "9a", "a:b", "a\"b", "__name__", "__x"] {
            assert!(!is_label_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn every_rule_has_its_own_error() {
        let l = |n: &str, v: &str| Label::new(n, v);
        assert_eq!(check(vec![family("ok", vec![vec![l("a", "x\n\"y\\")]])]), Ok(()));
        let cases: Vec<(Vec<Family>, &str)> = vec![
            (vec![family("a\"b", vec![vec![]])], "metric_name"),
            (vec![family("curvemon_host_up", vec![vec![]])], "reserved_name"),
            (vec![family("x", vec![vec![l("a\"b", "1")]])], "label_name"),
            (vec![family("x", vec![vec![l("__name__", "1")]])], "label_name"),
            (vec![family("x", vec![vec![l("host", "1")]])], "reserved_label"),
            (vec![family("x", vec![vec![]]), family("x", vec![vec![]])], "duplicate_family"),
            (vec![family("x", vec![vec![l("a", "1"), l("a", "2")]])], "duplicate_label"),
            (
                vec![family(
                    "x",
                    vec![vec![l("a", "1"), l("b", "2")], vec![l("b", "2"), l("a", "1")]],
                )],
                "duplicate_series",
            ),
            (
                vec![family("x", vec![vec![l("a", &"v".repeat(MAX_LABEL_VALUE_LEN + 1))]])],
                "too_long",
            ),
            (
                vec![family("x", vec![(0..40).map(|i| l(&format!("l{i}"), "v")).collect()])],
                "too_many",
            ),
            (vec![family(&"n".repeat(MAX_NAME_LEN + 1), vec![vec![]])], "too_long"),
        ];
        for (families, reason) in cases {
            let error = check(families).unwrap_err();
            assert_eq!(error.reason(), reason, "{error}");
            assert!(ModelError::REASONS.contains(&error.reason()));
        }
        let mut forged = Schema::new(vec![family("x", vec![vec![]])]);
        forged.revision ^= 1;
        assert_eq!(schema(&forged).unwrap_err().reason(), "revision");
        assert_eq!(hostname("").unwrap_err().reason(), "hostname");
        assert_eq!(hostname("a\nb").unwrap_err().reason(), "hostname");
        assert!(hostname("web-01.example").is_ok());
    }

    #[test]
    fn application_series() {
        use crate::{AppInstance, AppSeriesDecl};
        let instance = AppInstance {
            id: 1,
            app: "shop".into(),
            name: String::new(),
            pid: 0,
            unit: String::new(),
            source: "statsd-udp".into(),
        };
        let series = |id: u32, name: &str, kind: AppKind, labels: Vec<Label>| AppSeriesDecl {
            id,
            instance: 1,
            name: name.into(),
            help: String::new(),
            kind,
            labels,
        };
        let message = |declare: Vec<AppSeriesDecl>| AppSeries {
            full: true,
            instances: vec![instance.clone()],
            declare,
            retire: vec![],
            retire_instances: vec![],
        };
        let good = message(vec![
            series(1, "requests_total", AppKind::Counter, vec![Label::new("code", "200")]),
            series(2, "requests_total", AppKind::Counter, vec![Label::new("code", "500")]),
            series(3, "t", AppKind::Histogram { bounds: vec![0.1, 1.0] }, vec![]),
        ]);
        assert_eq!(app_series(&good), Ok(()));
        let reason = |m: AppSeries| app_series(&m).unwrap_err().reason();
        let inst = |l: &str| vec![Label::new(l, "x")];
        assert_eq!(
            reason(message(vec![series(1, "x", AppKind::Gauge, inst("instance"))])),
            "reserved_label"
        );
        assert_eq!(reason(message(vec![series(1, "a-b", AppKind::Gauge, vec![])])), "metric_name");
        assert_eq!(
            reason(message(vec![
                series(1, "x", AppKind::Gauge, vec![]),
                series(1, "y", AppKind::Gauge, vec![])
            ])),
            "duplicate_id"
        );
        assert_eq!(
            reason(message(vec![
                series(1, "x", AppKind::Gauge, vec![]),
                series(2, "x", AppKind::Gauge, vec![])
            ])),
            "duplicate_series"
        );
        let unsorted = AppKind::Histogram { bounds: vec![1.0, 0.5] };
        assert_eq!(reason(message(vec![series(1, "x", unsorted, vec![])])), "bounds");
        let quantiles = AppKind::Summary { quantiles: vec![0.5, 1.5] };
        assert_eq!(reason(message(vec![series(1, "x", quantiles, vec![])])), "bounds");
        let mut nameless = message(vec![]);
        nameless.instances[0].app = String::new();
        assert_eq!(reason(nameless), "app_name");
    }

    #[test]
    fn messages_quote_at_most_64_characters() {
        let long = "x\"".repeat(1000);
        let error = check(vec![family(&long[..150], vec![vec![]])]).unwrap_err();
        assert!(error.to_string().len() < 200, "{error}");
        assert!(error.to_string().contains("\\\""), "escaped: {error}");
    }
}
