//! Turns an agent's raw values into the numbers people read: CPU percent from
//! two consecutive counter samples, memory and load from gauges. Rates are
//! computed here, once, never on the agent.

use std::collections::HashMap;

use curvemon_protocol::Schema;

use crate::history::Point;
use serde::Serialize;

/// Where each family's values start in a metrics message, and the CPU
/// series' coordinates, computed once per model.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    offsets: HashMap<String, (usize, usize)>,
    /// (value index, position in `cpus`, is idle-like) for
    /// `node_cpu_seconds_total`.
    cpu: Vec<(usize, usize, bool)>,
    /// The CPU numbers the schema names, ascending (offline CPUs leave
    /// holes: 0, 1, 3); per-core values are in this order.
    cpus: Vec<u32>,
}

impl Layout {
    /// Indexes a schema.
    pub fn new(schema: &Schema) -> Self {
        let mut offsets = HashMap::new();
        let mut numbered = Vec::new();
        let mut at = 0usize;
        for family in &schema.families {
            offsets.insert(family.name.clone(), (at, family.series.len()));
            if family.name == "node_cpu_seconds_total" {
                for (i, labels) in family.series.iter().enumerate() {
                    let get =
                        |n: &str| labels.iter().find(|l| l.name == n).map(|l| l.value.as_str());
                    if let (Some(Ok(core)), Some(mode)) =
                        (get("cpu").map(str::parse::<u32>), get("mode"))
                    {
                        numbered.push((at + i, core, mode == "idle" || mode == "iowait"));
                    }
                }
            }
            at = at.saturating_add(family.series.len());
        }
        // Positions, not CPU numbers, index the per-core sums: a number
        // comes from the agent and must not size an allocation.
        let mut cpus: Vec<u32> = numbered.iter().map(|(_, core, _)| *core).collect();
        cpus.sort_unstable();
        cpus.dedup();
        let cpu = numbered
            .into_iter()
            .filter_map(|(index, core, idle)| Some((index, cpus.binary_search(&core).ok()?, idle)))
            .collect();
        Layout { offsets, cpu, cpus }
    }

    /// The CPU numbers per-core values are reported for, in their order.
    pub fn cpus(&self) -> &[u32] {
        &self.cpus
    }

    /// The value of an unlabelled family (the first series of a family).
    pub fn scalar(&self, values: &[f64], name: &str) -> Option<f64> {
        let (start, len) = *self.offsets.get(name)?;
        if len == 0 {
            return None;
        }
        values.get(start).copied().filter(|v| v.is_finite())
    }

    /// The sum of every series of a family (all interfaces, all disks).
    pub fn sum(&self, values: &[f64], name: &str) -> Option<f64> {
        let (start, len) = *self.offsets.get(name)?;
        let slice = values.get(start..start.checked_add(len)?)?;
        (!slice.is_empty()).then(|| slice.iter().filter(|v| v.is_finite()).sum())
    }

    /// The dashboard point for `current`, with rates from `previous` (the
    /// agent's previous sample and when it was taken) when there is one.
    pub fn point(
        &self,
        previous: Option<(u64, &[f64])>,
        taken_at_ms: u64,
        current: &[f64],
    ) -> Point {
        let nan = f32::NAN;
        let f = |v: Option<f64>| v.map_or(nan, |v| v as f32);
        let scalar = |name| self.scalar(current, name);
        let (cpu, cores) = previous
            .and_then(|(_, prev)| self.cpu_percent(prev, current))
            .map_or((None, Vec::new()), |(all, cores)| (Some(all), cores));
        let seconds = previous
            .map(|(t, _)| taken_at_ms.saturating_sub(t) as f64 / 1000.0)
            .filter(|s| *s > 0.0);
        let rate = |name: &str| -> Option<f64> {
            let (_, prev) = previous?;
            let delta = self.sum(current, name)? - self.sum(prev, name)?;
            Some(delta.max(0.0) / seconds?)
        };
        let total = scalar("node_memory_MemTotal_bytes");
        let available = scalar("node_memory_MemAvailable_bytes");
        let cached = match (scalar("node_memory_Cached_bytes"), scalar("node_memory_Buffers_bytes"))
        {
            (Some(c), Some(b)) => Some(c + b),
            (c, b) => c.or(b),
        };
        let swap_used =
            match (scalar("node_memory_SwapTotal_bytes"), scalar("node_memory_SwapFree_bytes")) {
                (Some(t), Some(f)) => Some(t - f),
                _ => None,
            };
        Point {
            t_ms: taken_at_ms,
            fields: [
                f(cpu),
                f(total.zip(available).map(|(t, a)| t - a)),
                f(cached),
                f(available),
                f(swap_used),
                f(scalar("node_load1")),
                f(scalar("node_load5")),
                f(scalar("node_load15")),
                f(rate("node_network_receive_bytes_total")),
                f(rate("node_network_transmit_bytes_total")),
                f(rate("node_disk_read_bytes_total")),
                f(rate("node_disk_written_bytes_total")),
            ],
            cores: cores.into_iter().map(|c| c as f32).collect(),
        }
    }

    /// Busy percent per core and overall, from two samples of
    /// `node_cpu_seconds_total`. `None` when there is no earlier sample or
    /// no time passed.
    pub fn cpu_percent(&self, previous: &[f64], current: &[f64]) -> Option<(f64, Vec<f64>)> {
        if self.cpu.is_empty() {
            return None;
        }
        let mut total = vec![0.0f64; self.cpus.len()];
        let mut idle = vec![0.0f64; self.cpus.len()];
        for &(index, core, idle_like) in &self.cpu {
            let delta = current.get(index)? - previous.get(index)?;
            // A counter that went backwards (CPU hot-unplug, agent bug) counts
            // as no time rather than negative time.
            let delta = if delta.is_finite() { delta.max(0.0) } else { 0.0 };
            total[core] += delta;
            if idle_like {
                idle[core] += delta;
            }
        }
        let busy =
            |t: f64, i: f64| if t > 0.0 { (100.0 * (t - i) / t).clamp(0.0, 100.0) } else { 0.0 };
        let all_total: f64 = total.iter().sum();
        if all_total <= 0.0 {
            return None;
        }
        let all_idle: f64 = idle.iter().sum();
        let per_core = total.iter().zip(&idle).map(|(&t, &i)| round2(busy(t, i))).collect();
        Some((round2(busy(all_total, all_idle)), per_core))
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The latest values of a host, as the API shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latest {
    /// The metrics message's sequence number.
    pub seq: u64,
    /// When the agent took the sample (RFC 3339).
    pub taken_at: String,
    /// Busy percent over all CPUs since the previous sample.
    pub cpu_percent: Option<f64>,
    /// Busy percent per CPU since the previous sample.
    pub cpu_percent_per_core: Vec<f64>,
    /// `MemAvailable`, bytes.
    pub mem_available_bytes: Option<f64>,
    /// `MemTotal`, bytes.
    pub mem_total_bytes: Option<f64>,
    /// Seconds since boot.
    pub uptime_seconds: Option<f64>,
    /// 1-minute load average.
    pub load1: Option<f64>,
    /// 5-minute load average.
    pub load5: Option<f64>,
    /// 15-minute load average.
    pub load15: Option<f64>,
}

#[cfg(test)]
mod tests {
    use curvemon_protocol::{Family, Kind, Label};

    use super::*;

    fn schema() -> Schema {
        let modes = ["user", "system", "idle", "iowait"];
        let series = (0..2)
            .flat_map(|cpu| {
                modes
                    .iter()
                    .map(move |m| vec![Label::new("cpu", cpu.to_string()), Label::new("mode", *m)])
            })
            .collect();
        Schema::new(vec![
            Family {
                name: "node_load1".into(),
                help: String::new(),
                kind: Kind::Gauge,
                series: vec![vec![]],
            },
            Family {
                name: "node_cpu_seconds_total".into(),
                help: String::new(),
                kind: Kind::Counter,
                series,
            },
        ])
    }

    #[test]
    fn cpu_percent_from_deltas() {
        let layout = Layout::new(&schema());
        // load1, then cpu0 user/system/idle/iowait, cpu1 user/system/idle/iowait
        let before = [0.5, 10.0, 5.0, 100.0, 1.0, 20.0, 0.0, 50.0, 0.0];
        // cpu0: +3 user +1 system +5 idle +1 iowait → 40% busy
        // cpu1: +10 user, nothing else → 100% busy
        let after = [0.7, 13.0, 6.0, 105.0, 2.0, 30.0, 0.0, 50.0, 0.0];
        let (all, per_core) = layout.cpu_percent(&before, &after).unwrap();
        assert_eq!(per_core, vec![40.0, 100.0]);
        assert_eq!(all, 70.0); // 14 busy of 20
        assert_eq!(layout.scalar(&after, "node_load1"), Some(0.7));
        assert_eq!(layout.scalar(&after, "node_load5"), None);
        assert_eq!(layout.cpu_percent(&after, &after), None, "no time passed");
        let point = layout.point(Some((1_000, &before)), 3_000, &after);
        assert_eq!(point.fields[0], 70.0);
        assert_eq!(&point.cores[..], &[40.0, 100.0]);
        assert_eq!(point.fields[5] as f64, 0.7f32 as f64, "load1");
        assert!(point.fields[8].is_nan(), "no network family in this schema");
        assert!(
            layout.point(None, 3_000, &after).fields[0].is_nan(),
            "no rate without a previous sample"
        );
    }

    #[test]
    fn rates_from_summed_counters() {
        let schema = Schema::new(vec![Family {
            name: "node_network_receive_bytes_total".into(),
            help: String::new(),
            kind: Kind::Counter,
            series: vec![vec![Label::new("device", "eth0")], vec![Label::new("device", "eth1")]],
        }]);
        let layout = Layout::new(&schema);
        let point = layout.point(Some((10_000, &[100.0, 50.0])), 12_000, &[1100.0, 250.0]);
        assert_eq!(point.fields[8], 600.0, "(1000 + 200) bytes over 2 s");
    }

    #[test]
    fn cores_are_positions_of_the_cpu_numbers_present() {
        let series = [0u32, 1, 3]
            .iter()
            .flat_map(|cpu| {
                ["user", "idle"]
                    .map(|m| vec![Label::new("cpu", cpu.to_string()), Label::new("mode", m)])
            })
            .collect();
        let layout = Layout::new(&Schema::new(vec![Family {
            name: "node_cpu_seconds_total".into(),
            help: String::new(),
            kind: Kind::Counter,
            series,
        }]));
        assert_eq!(layout.cpus(), [0, 1, 3]);
        // cpu0 +1 user +1 idle, cpu1 +2 user, cpu3 +2 idle.
        let (all, cores) = layout.cpu_percent(&[0.0; 6], &[1.0, 1.0, 2.0, 0.0, 0.0, 2.0]).unwrap();
        assert_eq!(cores, [50.0, 100.0, 0.0], "three cores, no phantom CPU 2");
        assert_eq!(all, 50.0);
        // A hostile CPU number sizes nothing.
        let huge = Layout::new(&Schema::new(vec![Family {
            name: "node_cpu_seconds_total".into(),
            help: String::new(),
            kind: Kind::Counter,
            series: vec![vec![Label::new("cpu", "4294967295"), Label::new("mode", "user")]],
        }]));
        assert_eq!(huge.cpus(), [u32::MAX]);
        assert_eq!(huge.cpu_percent(&[0.0], &[1.0]).unwrap().1, [100.0]);
    }

    #[test]
    fn counter_reset_is_not_negative() {
        let layout = Layout::new(&schema());
        let before = [0.0, 100.0, 0.0, 100.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let after = [0.0, 1.0, 0.0, 110.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let (all, per_core) = layout.cpu_percent(&before, &after).unwrap();
        assert_eq!(per_core, vec![0.0, 0.0]);
        assert_eq!(all, 0.0);
    }
}
