//! A host's services, containers and process groups over time: CPU busy
//! percent and memory of each, for the host page's charts.
//!
//! They come from the agent's cgroup families (`container_*{name}`: one
//! group per systemd service or container) and `[[process]]` groups
//! (`namedprocess_namegroup_*{groupname}`, shown as `group:NAME`). Agents
//! read both every 10 s by default and repeat the values in between, so a
//! CPU rate is computed between two *changed* totals, not two samples;
//! a total that does not move for a minute is taken as idle (0 %).
//!
//! A point is made only when a value changed (once per read, not once per
//! sample), with at most [`KEPT`] groups, the busiest. The registry keeps
//! each host's latest point; charts over time are derived from the stored
//! samples when asked ([`from_store`]), so memory does not grow with the
//! history kept.

use std::collections::{HashMap, VecDeque};

use curvemon_protocol::Schema;

/// Groups kept per point: the busiest by CPU, then memory.
pub const KEPT: usize = 24;

/// A group's rate is 0 after its CPU total has not moved for this long.
const IDLE_MS: u64 = 60_000;

/// Where one group's values are in a metrics message.
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    name: String,
    /// CPU seconds series to add up (a process group has user and system).
    cpu: Vec<usize>,
    /// Memory bytes series.
    mem: Option<usize>,
}

/// Where every group's values are, computed once per model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout(Vec<Slot>);

impl Layout {
    /// Finds the group series of a schema.
    pub fn new(schema: &Schema) -> Self {
        let mut slots: Vec<Slot> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut at = 0usize;
        for family in &schema.families {
            let role = match family.name.as_str() {
                "container_cpu_usage_seconds_total" => Some(("name", "", true)),
                "container_memory_usage_bytes" => Some(("name", "", false)),
                "namedprocess_namegroup_cpu_seconds_total" => Some(("groupname", "group:", true)),
                "namedprocess_namegroup_memory_bytes" => Some(("groupname", "group:", false)),
                _ => None,
            };
            if let Some((key, prefix, cpu)) = role {
                for (i, labels) in family.series.iter().enumerate() {
                    let get =
                        |n: &str| labels.iter().find(|l| l.name == n).map(|l| l.value.as_str());
                    if get("memtype").is_some_and(|m| m != "resident") {
                        continue;
                    }
                    let Some(name) = get(key) else { continue };
                    let name = format!("{prefix}{name}");
                    let slot = *index.entry(name.clone()).or_insert_with(|| {
                        slots.push(Slot { name, cpu: Vec::new(), mem: None });
                        slots.len() - 1
                    });
                    if cpu {
                        slots[slot].cpu.push(at + i);
                    } else {
                        slots[slot].mem = Some(at + i);
                    }
                }
            }
            at = at.saturating_add(family.series.len());
        }
        Layout(slots)
    }

    /// Whether the schema has any group.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One point: per group (by interned name) CPU percent and memory bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The sample's time, Unix ms.
    pub t_ms: u64,
    /// `(name id, cpu %, memory bytes)`; NaN where unknown.
    pub values: Box<[(u32, f32, f32)]>,
}

/// A group's CPU total and when it last changed.
#[derive(Debug, Clone, Copy)]
struct Rate {
    total: f64,
    changed_ms: u64,
    percent: f64,
}

/// A host's groups over time.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    layout: std::sync::Arc<Layout>,
    names: Vec<String>,
    ids: HashMap<String, u32>,
    rates: HashMap<u32, Rate>,
    last: Option<Vec<(f64, f64)>>,
    /// Points, oldest first.
    pub history: VecDeque<Point>,
}

impl Groups {
    /// Uses a new model's layout (names are kept: history stays readable);
    /// the layout is shared by every host of that schema.
    pub fn relayout(&mut self, layout: std::sync::Arc<Layout>) {
        self.layout = layout;
        self.last = None;
    }

    /// The name of an id.
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("?", String::as_str)
    }

    fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    /// Takes a sample's values; returns the new point when the groups'
    /// values changed (a new read), keeping `horizon_ms` of history.
    pub fn update(&mut self, values: &[f64], t_ms: u64, horizon_ms: u64) -> Option<&Point> {
        if self.layout.is_empty() {
            return None;
        }
        let now: Vec<(f64, f64)> = self
            .layout
            .0
            .iter()
            .map(|slot| {
                let cpu: f64 = slot.cpu.iter().filter_map(|i| values.get(*i)).sum();
                let mem = slot.mem.and_then(|i| values.get(i).copied()).unwrap_or(f64::NAN);
                (cpu, mem)
            })
            .collect();
        let same = self.last.as_ref().is_some_and(|last| {
            last.len() == now.len()
                && last
                    .iter()
                    .zip(&now)
                    .all(|(a, b)| a.0.to_bits() == b.0.to_bits() && a.1.to_bits() == b.1.to_bits())
        });
        if same {
            return None;
        }
        self.last = Some(now.clone());
        let mut point: Vec<(u32, f32, f32)> = Vec::with_capacity(now.len());
        let layout = std::sync::Arc::clone(&self.layout);
        for (slot, (cpu, mem)) in layout.0.iter().zip(now) {
            let id = self.id(&slot.name);
            let percent = match self.rates.get(&id) {
                Some(r) if cpu.is_finite() && cpu != r.total && t_ms > r.changed_ms => {
                    let seconds = (t_ms - r.changed_ms) as f64 / 1000.0;
                    (100.0 * (cpu - r.total) / seconds).max(0.0)
                }
                Some(r) if t_ms.saturating_sub(r.changed_ms) >= IDLE_MS => 0.0,
                Some(r) => r.percent,
                None => f64::NAN,
            };
            let moved = self.rates.get(&id).is_none_or(|r| r.total != cpu);
            let changed_ms =
                if moved { t_ms } else { self.rates.get(&id).map_or(t_ms, |r| r.changed_ms) };
            self.rates.insert(id, Rate { total: cpu, changed_ms, percent });
            point.push((id, percent as f32, mem as f32));
        }
        // The busiest first; keep a bounded number.
        point.sort_by(|a, b| {
            let key = |v: &(u32, f32, f32)| {
                (if v.1.is_finite() { v.1 } else { 0.0 }, if v.2.is_finite() { v.2 } else { 0.0 })
            };
            key(b).partial_cmp(&key(a)).unwrap_or(std::cmp::Ordering::Equal)
        });
        point.truncate(KEPT);
        self.history.push_back(Point { t_ms, values: point.into_boxed_slice() });
        while self.history.front().is_some_and(|p| t_ms.saturating_sub(p.t_ms) > horizon_ms) {
            self.history.pop_front();
        }
        self.history.back()
    }
}

/// A host's groups over `from_ms..=to_ms`, derived from its stored
/// samples as they were when they arrived: the names and the points.
///
/// # Errors
/// The store cannot be read.
pub fn from_store(
    store: &dyn crate::store::Store,
    host: &curvemon_keys::PublicKey,
    from_ms: u64,
    to_ms: u64,
) -> Result<(Groups, Vec<Point>), crate::store::StoreError> {
    let read = store.samples(host, from_ms, to_ms)?;
    let mut layouts: HashMap<u64, std::sync::Arc<Layout>> = HashMap::new();
    let mut schemas: Option<Vec<Schema>> = None;
    let mut groups = Groups::default();
    let mut revision = None;
    let mut points = Vec::new();
    for sample in read.items {
        if revision != Some(sample.revision) {
            let layout = match layouts.entry(sample.revision) {
                std::collections::hash_map::Entry::Occupied(e) => std::sync::Arc::clone(e.get()),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let all = match &schemas {
                        Some(all) => all,
                        None => schemas.insert(store.schemas()?),
                    };
                    let layout = all
                        .iter()
                        .find(|s| s.revision == sample.revision)
                        .map_or_else(Layout::default, Layout::new);
                    std::sync::Arc::clone(e.insert(std::sync::Arc::new(layout)))
                }
            };
            groups.relayout(layout);
            revision = Some(sample.revision);
        }
        if let Some(point) = groups.update(&sample.values, sample.t_ms, u64::MAX) {
            points.push(point.clone());
        }
        groups.history.clear();
    }
    Ok((groups, points))
}

#[cfg(test)]
mod tests {
    use curvemon_protocol::{Family, Kind, Label};

    use super::*;

    fn schema() -> Schema {
        let fam = |name: &str, kind, series| Family {
            name: name.into(),
            help: String::new(),
            kind,
            series,
        };
        Schema::new(vec![
            fam(
                "container_cpu_usage_seconds_total",
                Kind::Counter,
                vec![
                    vec![Label::new("name", "nginx.service")],
                    vec![Label::new("name", "db.service")],
                ],
            ),
            fam(
                "container_memory_usage_bytes",
                Kind::Gauge,
                vec![
                    vec![Label::new("name", "nginx.service")],
                    vec![Label::new("name", "db.service")],
                ],
            ),
            fam(
                "namedprocess_namegroup_cpu_seconds_total",
                Kind::Counter,
                vec![
                    vec![Label::new("groupname", "app"), Label::new("mode", "user")],
                    vec![Label::new("groupname", "app"), Label::new("mode", "system")],
                ],
            ),
        ])
    }

    #[test]
    fn rates_between_changed_totals() {
        let mut g = Groups::default();
        g.relayout(std::sync::Arc::new(Layout::new(&schema())));
        // nginx cpu, db cpu, nginx mem, db mem, app user, app system
        assert!(g.update(&[10.0, 1.0, 5e6, 9e6, 1.0, 1.0], 0, 3_600_000).is_some());
        assert!(
            g.update(&[10.0, 1.0, 5e6, 9e6, 1.0, 1.0], 1_000, 3_600_000).is_none(),
            "repeated values"
        );
        let p = g.update(&[15.0, 1.0, 6e6, 9e6, 2.0, 2.0], 10_000, 3_600_000).unwrap().clone();
        let get = |name: &str| *p.values.iter().find(|v| g.name(v.0) == name).unwrap();
        assert_eq!(get("nginx.service").1, 50.0, "5 s of CPU in 10 s");
        assert_eq!(get("nginx.service").2, 6e6);
        assert_eq!(get("group:app").1, 20.0, "user and system together");
        assert!(get("group:app").2.is_nan(), "no memory series");
        assert!(get("db.service").1.is_nan(), "no change yet: unknown");
        assert_eq!(p.values[0].0, g.ids["nginx.service"], "busiest first");
        let p = g.update(&[16.0, 1.0, 6e6, 9e6, 2.0, 2.0], 70_000, 3_600_000).unwrap().clone();
        let db = p.values.iter().find(|v| g.name(v.0) == "db.service").unwrap();
        assert_eq!(db.1, 0.0, "a minute without change is idle");
    }
}
