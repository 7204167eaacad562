//! `/metrics` for a large fleet: every host's series in the Prometheus
//! text format, written straight from a snapshot rather than through the
//! `prometheus` crate's structures, and in chunks as it goes.
//!
//! The snapshot is taken under the registry's lock and holds, per host,
//! only shared pointers (its schema's shape, its latest values) and a few
//! words, so the lock is held for a copy of pointers, not for rendering;
//! rendering runs on a blocking thread and hands the body over in chunks
//! of [`CHUNK`] bytes, so neither the router nor the async workers wait
//! for a 100 MB scrape. The rest (the collector's own counters,
//! applications, checks) is small and comes from
//! [`crate::exposition::gather`]; both are merged in name order, so the
//! output is what the text encoder would write for the same families.

use std::{collections::BTreeMap, sync::Arc};

use curvemon_protocol::Kind;
use prometheus::proto::MetricFamily;

use crate::{
    registry::{Registry, State},
    shapes::Shape,
};

/// Bytes per chunk handed to the response.
pub const CHUNK: usize = 256 * 1024;

/// One host as the scrape sees it.
struct HostSnap {
    name: String,
    state: State,
    last_seen_s: f64,
    info: Option<[String; 5]>,
    shape: Option<Arc<Shape>>,
    values: Option<Arc<Vec<f64>>>,
}

/// Every named host, by name, as it was when taken.
pub struct Snapshot {
    hosts: Vec<HostSnap>,
}

impl Snapshot {
    /// Takes it (under the caller's lock: pointers and a few strings).
    pub fn take(registry: &Registry) -> Snapshot {
        let mut hosts: Vec<HostSnap> = registry
            .hosts()
            .filter_map(|h| {
                Some(HostSnap {
                    name: h.hostname.clone()?,
                    state: h.state,
                    last_seen_s: h
                        .last_seen_wall
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64()),
                    info: h.model.as_ref().map(|m| {
                        [
                            m.os.clone(),
                            m.kernel.clone(),
                            m.cpu_model.clone(),
                            m.machine_id.clone(),
                            m.agent_version.clone(),
                        ]
                    }),
                    shape: h.shape().cloned(),
                    values: h.values.clone(),
                })
            })
            .collect();
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        Snapshot { hosts }
    }

    /// The names of the hosts' own families (applications may not take
    /// them).
    pub fn family_names(&self) -> std::collections::HashSet<String> {
        let mut seen = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for shape in self.hosts.iter().filter_map(|h| h.shape.as_ref()) {
            if seen.insert(Arc::as_ptr(shape)) {
                names.extend(shape.schema.families.iter().map(|f| f.name.clone()));
            }
        }
        names
    }
}

/// Where a family is in one shape: its first value and its index.
type Offsets = BTreeMap<String, (usize, usize)>;

/// Per family (by name), what to write: its help and type, then per host
/// the shape offsets to read.
struct HostFamily {
    help: String,
    kind: Kind,
}

fn escape(text: &str, quote: bool, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn header(name: &str, help: &str, kind: &str, out: &mut String) {
    if !help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        escape(help, false, out);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

fn line(name: &str, labels: &[(&str, &str)], value: f64, out: &mut String) {
    use std::fmt::Write as _;
    out.push_str(name);
    let mut sep = '{';
    for (k, v) in labels {
        out.push(sep);
        out.push_str(k);
        out.push_str("=\"");
        escape(v, true, out);
        out.push('"');
        sep = ',';
    }
    if sep == ',' {
        out.push('}');
    }
    let _ = write!(out, " {value}");
    out.push('\n');
}

/// The other families, encoded (so that an encoding error is known before
/// the response starts): each family's name and text, and the text written
/// last.
pub struct Rest {
    families: Vec<(String, String)>,
    tail: String,
}

impl Rest {
    /// Encodes `families` (each placed by name) and `tail` (written last).
    ///
    /// # Errors
    /// A family the text format cannot represent.
    pub fn encode(
        families: Vec<MetricFamily>,
        tail: Vec<MetricFamily>,
    ) -> Result<Rest, prometheus::Error> {
        let encoder = prometheus::TextEncoder::new();
        let families = families
            .into_iter()
            .map(|f| Ok((f.name().to_string(), encoder.encode_to_string(&[f])?)))
            .collect::<Result<_, prometheus::Error>>()?;
        Ok(Rest { families, tail: encoder.encode_to_string(&tail)? })
    }
}

/// Writes the exposition of `snapshot` and `rest` (sorted by name, then
/// `rest`'s tail), handing `emit` a chunk whenever [`CHUNK`] bytes
/// gathered; stops early when `emit` returns false (the client went away).
pub fn render(snapshot: &Snapshot, rest: Rest, mut emit: impl FnMut(String) -> bool) {
    // The hosts' families: per distinct shape, where each family is.
    let mut offsets: Vec<(*const Shape, Offsets)> = Vec::new();
    let mut families: BTreeMap<String, HostFamily> = BTreeMap::new();
    for shape in snapshot.hosts.iter().filter_map(|h| h.shape.as_ref()) {
        if offsets.iter().any(|(p, _)| *p == Arc::as_ptr(shape)) {
            continue;
        }
        let mut at = 0;
        let mut map = Offsets::new();
        for (i, f) in shape.schema.families.iter().enumerate() {
            map.insert(f.name.clone(), (at, i));
            at += f.series.len();
            families
                .entry(f.name.clone())
                .or_insert_with(|| HostFamily { help: f.help.clone(), kind: f.kind });
        }
        offsets.push((Arc::as_ptr(shape), map));
    }
    let mut own: BTreeMap<&'static str, (&'static str, &'static str)> = BTreeMap::new();
    own.insert("curvemon_host_up", ("1 when the host is up, 0 when stale or down.", "gauge"));
    own.insert("curvemon_host_state", ("1 for the host's current liveness state.", "gauge"));
    own.insert(
        "curvemon_host_last_seen_timestamp_seconds",
        ("When the host's last message arrived, Unix time.", "gauge"),
    );
    own.insert("curvemon_host_info", ("The host model; always 1.", "gauge"));

    // Every name in order: the hosts' families, their liveness families
    // and the rest.
    enum Next<'a> {
        Host(&'a str, &'a HostFamily),
        Own(&'static str, (&'static str, &'static str)),
        Rest(String),
    }
    let mut all: Vec<(String, Next<'_>)> = Vec::new();
    all.extend(families.iter().map(|(n, f)| (n.clone(), Next::Host(n, f))));
    if !snapshot.hosts.is_empty() {
        all.extend(own.iter().map(|(n, h)| (n.to_string(), Next::Own(n, *h))));
    }
    all.extend(rest.families.into_iter().map(|(name, text)| (name, Next::Rest(text))));
    all.sort_by(|a, b| a.0.cmp(&b.0));

    let mut out = String::with_capacity(CHUNK + 4096);
    let mut flush = |out: &mut String, force: bool| -> bool {
        if out.len() >= CHUNK || (force && !out.is_empty()) {
            emit(std::mem::replace(out, String::with_capacity(CHUNK + 4096)))
        } else {
            true
        }
    };
    let live = || snapshot.hosts.iter().filter(|h| h.state != State::Down);
    for (_, next) in all {
        match next {
            Next::Host(name, family) => {
                let kind = match family.kind {
                    Kind::Gauge => "gauge",
                    Kind::Counter => "counter",
                };
                let mut headed = false;
                for host in live() {
                    let (Some(shape), Some(values)) = (&host.shape, &host.values) else { continue };
                    let Some((_, map)) = offsets.iter().find(|(p, _)| *p == Arc::as_ptr(shape))
                    else {
                        continue;
                    };
                    let Some(&(at, index)) = map.get(name) else { continue };
                    let fam = &shape.schema.families[index];
                    for (k, labels) in fam.series.iter().enumerate() {
                        let Some(&v) = values.get(at + k) else { break };
                        if v.is_nan() {
                            continue;
                        }
                        let mut pairs: Vec<(&str, &str)> =
                            labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
                        pairs.push(("host", &host.name));
                        if !headed {
                            header(name, &family.help, kind, &mut out);
                            headed = true;
                        }
                        line(name, &pairs, v, &mut out);
                    }
                    if !flush(&mut out, false) {
                        return;
                    }
                }
            }
            Next::Own(name, (help, kind)) => {
                if name == "curvemon_host_info" && snapshot.hosts.iter().all(|h| h.info.is_none()) {
                    continue;
                }
                header(name, help, kind, &mut out);
                for host in &snapshot.hosts {
                    let h = host.name.as_str();
                    match name {
                        "curvemon_host_up" => line(
                            name,
                            &[("host", h)],
                            f64::from(u8::from(host.state == State::Up)),
                            &mut out,
                        ),
                        "curvemon_host_state" => {
                            for state in [State::Up, State::Stale, State::Down] {
                                let s = state.to_string();
                                let v = f64::from(u8::from(host.state == state));
                                line(name, &[("host", h), ("state", &s)], v, &mut out);
                            }
                        }
                        "curvemon_host_last_seen_timestamp_seconds" => {
                            line(name, &[("host", h)], host.last_seen_s, &mut out)
                        }
                        _ => {
                            if let Some([os, kernel, cpu, machine, agent]) = &host.info {
                                let labels = [
                                    ("host", h),
                                    ("os", os.as_str()),
                                    ("kernel", kernel.as_str()),
                                    ("cpu_model", cpu.as_str()),
                                    ("machine_id", machine.as_str()),
                                    ("agent_version", agent.as_str()),
                                ];
                                line(name, &labels, 1.0, &mut out);
                            }
                        }
                    }
                    if !flush(&mut out, false) {
                        return;
                    }
                }
            }
            Next::Rest(text) => out.push_str(&text),
        }
        if !flush(&mut out, false) {
            return;
        }
    }
    out.push_str(&rest.tail);
    flush(&mut out, true);
}
