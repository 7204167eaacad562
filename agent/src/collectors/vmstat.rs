//! `/proc/vmstat`: page faults, paging, swapping and OOM kills, under
//! node_exporter's names (`node_vmstat_<field>`, its default field set).

use std::borrow::Cow;

use curvemon_protocol::Kind;
use procfs::VmStat;

use super::{Collector, FamilySample};
use crate::roots::{ProcReadError, Roots};

/// node_exporter's default `--collector.vmstat.fields`, spelled out.
const FIELDS: [&str; 7] =
    ["oom_kill", "pgfault", "pgmajfault", "pgpgin", "pgpgout", "pswpin", "pswpout"];

/// The `/proc/vmstat` collector.
#[derive(Debug, Default)]
pub struct Vmstat;

impl Collector for Vmstat {
    fn name(&self) -> &'static str {
        "vmstat"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let stat: VmStat = roots.read()?;
        // Only the fields this kernel has (oom_kill appeared in 4.13).
        Ok(FIELDS
            .iter()
            .filter_map(|field| {
                let value = *stat.0.get(*field)?;
                Some(FamilySample {
                    name: Cow::Owned(format!("node_vmstat_{field}")),
                    help: Cow::Owned(format!("/proc/vmstat information field {field}.")),
                    kind: Kind::Counter,
                    series: vec![(Vec::new(), value as f64)],
                })
            })
            .collect())
    }
}
