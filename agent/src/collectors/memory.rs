//! `/proc/meminfo`: the fields people chart, in bytes, under node_exporter's
//! names (`node_memory_<Field>_bytes`; huge page counts have no unit).
//! Parsed directly for just these fields; a field the kernel does not have
//! (MemAvailable before 3.14) is NaN rather than a made-up zero.

use curvemon_protocol::Kind;

use super::{Collector, FamilySample};
use crate::roots::{FileCache, ProcReadError, Roots};

/// The `/proc/meminfo` collector.
#[derive(Debug, Default)]
pub struct Memory {
    files: FileCache,
}

/// meminfo key, metric name, help.
const FIELDS: [(&str, &str, &str); 18] = [
    ("MemTotal", "node_memory_MemTotal_bytes", "Memory information field MemTotal_bytes."),
    ("MemFree", "node_memory_MemFree_bytes", "Memory information field MemFree_bytes."),
    (
        "MemAvailable",
        "node_memory_MemAvailable_bytes",
        "Memory information field MemAvailable_bytes.",
    ),
    ("Buffers", "node_memory_Buffers_bytes", "Memory information field Buffers_bytes."),
    ("Cached", "node_memory_Cached_bytes", "Memory information field Cached_bytes."),
    ("SwapCached", "node_memory_SwapCached_bytes", "Memory information field SwapCached_bytes."),
    ("Active", "node_memory_Active_bytes", "Memory information field Active_bytes."),
    ("Inactive", "node_memory_Inactive_bytes", "Memory information field Inactive_bytes."),
    ("SwapTotal", "node_memory_SwapTotal_bytes", "Memory information field SwapTotal_bytes."),
    ("SwapFree", "node_memory_SwapFree_bytes", "Memory information field SwapFree_bytes."),
    ("Dirty", "node_memory_Dirty_bytes", "Memory information field Dirty_bytes."),
    ("Writeback", "node_memory_Writeback_bytes", "Memory information field Writeback_bytes."),
    ("Shmem", "node_memory_Shmem_bytes", "Memory information field Shmem_bytes."),
    ("Slab", "node_memory_Slab_bytes", "Memory information field Slab_bytes."),
    (
        "SReclaimable",
        "node_memory_SReclaimable_bytes",
        "Memory information field SReclaimable_bytes.",
    ),
    ("HugePages_Total", "node_memory_HugePages_Total", "Memory information field HugePages_Total."),
    ("HugePages_Free", "node_memory_HugePages_Free", "Memory information field HugePages_Free."),
    (
        "Hugepagesize",
        "node_memory_Hugepagesize_bytes",
        "Memory information field Hugepagesize_bytes.",
    ),
];

/// The value of each of [`FIELDS`] in `text`, in bytes (kB × 1024) or as a
/// count where the line has no unit.
///
/// # Errors
/// A selected field whose value is not a number.
pub fn parse(text: &str) -> Result<[Option<f64>; FIELDS.len()], String> {
    let mut values = [None; FIELDS.len()];
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else { continue };
        let Some(i) = FIELDS.iter().position(|(k, _, _)| *k == key) else { continue };
        let mut words = rest.split_ascii_whitespace();
        let number: f64 =
            words.next().and_then(|n| n.parse().ok()).ok_or_else(|| format!("{key}: {rest:?}"))?;
        values[i] = Some(if words.next() == Some("kB") { number * 1024.0 } else { number });
    }
    Ok(values)
}

impl Collector for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let path = roots.path("meminfo");
        let values = parse(self.files.read_one_piece(path.clone())?)
            .map_err(|e| ProcReadError::other(path.clone(), e))?;
        if values[0].is_none() {
            return Err(ProcReadError::other(path, "no MemTotal"));
        }
        Ok(FIELDS
            .iter()
            .zip(values)
            .map(|((_, name, help), value)| {
                FamilySample::single(name, help, Kind::Gauge, value.unwrap_or(f64::NAN))
            })
            .collect())
    }
}
