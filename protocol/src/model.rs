//! The host model: slow-changing inventory plus the metric schema.
//!
//! Metrics are sent often and by many hosts, so names and labels travel only
//! here. A [`crate::Metrics`] message carries bare values in the order the
//! schema lists its series, plus the schema's revision. A new disk or network
//! interface changes the schema, and so its revision.

use serde::{Deserialize, Serialize};

/// What a host is. Sent on request, and unasked when the schema changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The name the host is shown under.
    pub hostname: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// `/proc/sys/kernel/osrelease`, for example `6.1.0-18-amd64`.
    pub kernel: String,
    /// `PRETTY_NAME` from os-release, for example `Debian GNU/Linux 12 (bookworm)`.
    pub os: String,
    /// `model name` of the first CPU in `/proc/cpuinfo` (empty where the
    /// architecture does not report one).
    pub cpu_model: String,
    /// Number of CPUs the kernel reports in `/proc/stat`.
    pub cpu_count: u32,
    /// `MemTotal` from `/proc/meminfo`, in bytes.
    pub mem_total_bytes: u64,
    /// `SwapTotal` from `/proc/meminfo`, in bytes.
    pub swap_total_bytes: u64,
    /// Boot time, Unix seconds (`btime` in `/proc/stat`).
    pub boot_time_unix: u64,
    /// The agent's version.
    pub agent_version: String,
    /// The agent's sampling interval, in milliseconds (repeated from the
    /// hello so that a restarted collector learns it from the model alone).
    pub interval_ms: u32,
    /// Names, labels and kinds of the values in each metrics message.
    pub schema: Schema,
}

/// The layout of [`crate::Metrics::values`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// Identifies this exact layout; computed from its content by
    /// [`Schema::compute_revision`], so equal layouts share a revision even
    /// across agent restarts.
    pub revision: u64,
    /// Metric families in value order.
    pub families: Vec<Family>,
}

/// One metric name with its series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    /// Prometheus-style name, node_exporter's where one exists
    /// (`node_cpu_seconds_total`).
    pub name: String,
    /// One line for humans, used as the `# HELP` text.
    pub help: String,
    /// Counter or gauge.
    pub kind: Kind,
    /// Label sets, one per series; a family without labels has one empty set.
    pub series: Vec<Vec<Label>>,
}

/// How a value behaves over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Only goes up (until the agent or host restarts); rates come from deltas.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One label of a series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Label name, for example `cpu`.
    pub name: String,
    /// Label value, for example `0`.
    pub value: String,
}

impl Label {
    /// Builds a label from anything string-like.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label { name: name.into(), value: value.into() }
    }
}

impl Schema {
    /// Builds a schema and stamps it with its content revision.
    pub fn new(families: Vec<Family>) -> Self {
        let revision = Self::compute_revision(&families);
        Schema { revision, families }
    }

    /// Number of values a matching metrics message must carry.
    pub fn series_count(&self) -> usize {
        self.families.iter().map(|f| f.series.len()).sum()
    }

    /// FNV-1a (64-bit) over names, kinds and labels. Stable across builds and
    /// platforms, unlike `std`'s hasher; help texts are left out because they
    /// do not change the meaning of values. `docs/protocol.md` specifies it.
    pub fn compute_revision(families: &[Family]) -> u64 {
        let mut hash = RevisionHasher::new();
        for family in families {
            hash.family(&family.name, family.kind);
            for labels in &family.series {
                hash.series();
                for label in labels {
                    hash.label(&label.name, &label.value);
                }
            }
        }
        hash.finish()
    }
}

/// [`Schema::compute_revision`] fed piece by piece, so that an agent can
/// hash its layout as it samples, without building a [`Schema`] first.
#[derive(Debug, Clone)]
pub struct RevisionHasher(Fnv64);

impl Default for RevisionHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl RevisionHasher {
    /// A hasher over an empty layout.
    pub fn new() -> Self {
        RevisionHasher(Fnv64::new())
    }

    /// Starts a family.
    pub fn family(&mut self, name: &str, kind: Kind) {
        self.0.write(name.as_bytes());
        self.0.write(&[0xff, kind as u8]);
    }

    /// Starts a series of the current family.
    pub fn series(&mut self) {
        self.0.write(&[0xfe]);
    }

    /// Adds a label of the current series.
    pub fn label(&mut self, name: &str, value: &str) {
        self.0.write(name.as_bytes());
        self.0.write(&[0]);
        self.0.write(value.as_bytes());
        self.0.write(&[0]);
    }

    /// The revision.
    pub fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// The 64-bit FNV-1a hash; tiny and fully specified.
#[derive(Debug, Clone)]
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(name: &str, cpus: &[&str]) -> Family {
        Family {
            name: name.into(),
            help: "help".into(),
            kind: Kind::Counter,
            series: cpus.iter().map(|c| vec![Label::new("cpu", *c)]).collect(),
        }
    }

    #[test]
    fn revision_depends_on_series_not_help() {
        let a = Schema::new(vec![family("x", &["0", "1"])]);
        let mut with_other_help = vec![family("x", &["0", "1"])];
        with_other_help[0].help = "other".into();
        assert_eq!(a.revision, Schema::new(with_other_help).revision);
        assert_ne!(a.revision, Schema::new(vec![family("x", &["0", "1", "2"])]).revision);
        assert_ne!(a.revision, Schema::new(vec![family("y", &["0", "1"])]).revision);
        assert_eq!(a.series_count(), 2);
    }

    #[test]
    fn fnv_matches_reference_vector() {
        // FNV-1a 64 of "a" from the reference test suite.
        let mut hash = Fnv64::new();
        hash.write(b"a");
        assert_eq!(hash.finish(), 0xaf63_dc4c_8601_ec8c);
    }
}
