//! `/proc/vmstat`: page faults, paging, swapping and OOM kills, under
//! node_exporter's names (`node_vmstat_<field>`, its default field set).
//! Only those fields are parsed; the file has some 180.

use std::borrow::Cow;

use curvemon_protocol::Kind;

use super::{Collector, FamilySample};
use crate::roots::{FileCache, ProcReadError, Roots};

/// node_exporter's default `--collector.vmstat.fields`, spelled out.
const FIELDS: [&str; 7] =
    ["oom_kill", "pgfault", "pgmajfault", "pgpgin", "pgpgout", "pswpin", "pswpout"];

/// The `/proc/vmstat` collector.
#[derive(Debug, Default)]
pub struct Vmstat {
    files: FileCache,
}

impl Collector for Vmstat {
    fn name(&self) -> &'static str {
        "vmstat"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let path = roots.path("vmstat");
        let text = self.files.read(path.clone())?;
        let mut found: [Option<f64>; FIELDS.len()] = [None; FIELDS.len()];
        for line in text.lines() {
            let Some((key, value)) = line.split_once(' ') else { continue };
            if let Some(i) = FIELDS.iter().position(|f| *f == key) {
                let value = value.trim().parse::<f64>().map_err(|_| {
                    ProcReadError::other(path.clone(), format!("{key}: {value:?} is not a number"))
                })?;
                found[i] = Some(value);
            }
        }
        // Only the fields this kernel has (oom_kill appeared in 4.13).
        Ok(FIELDS
            .iter()
            .zip(found)
            .filter_map(|(field, value)| {
                Some(FamilySample {
                    name: Cow::Owned(format!("node_vmstat_{field}")),
                    help: Cow::Owned(format!("/proc/vmstat information field {field}.")),
                    kind: Kind::Counter,
                    series: vec![(Vec::new(), value?)],
                })
            })
            .collect())
    }
}
