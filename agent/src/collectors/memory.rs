//! `/proc/meminfo`: the fields people chart, in bytes, under node_exporter's
//! names (`node_memory_<Field>_bytes`).

use curvemon_protocol::Kind;
use procfs::Meminfo;

use super::{Collector, FamilySample};
use crate::proc_root::{ProcReadError, ProcRoot};

/// The `/proc/meminfo` collector.
#[derive(Debug, Default)]
pub struct Memory;

impl Collector for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn collect(&mut self, root: &ProcRoot) -> Result<Vec<FamilySample>, ProcReadError> {
        let m: Meminfo = root.read()?;
        // Fields that older kernels lack are NaN rather than a made-up zero.
        let opt = |v: Option<u64>| v.map_or(f64::NAN, |v| v as f64);
        let fields: [(&'static str, &'static str, f64); 11] = [
            (
                "node_memory_MemTotal_bytes",
                "Memory information field MemTotal_bytes.",
                m.mem_total as f64,
            ),
            (
                "node_memory_MemFree_bytes",
                "Memory information field MemFree_bytes.",
                m.mem_free as f64,
            ),
            (
                "node_memory_MemAvailable_bytes",
                "Memory information field MemAvailable_bytes.",
                opt(m.mem_available),
            ),
            (
                "node_memory_Buffers_bytes",
                "Memory information field Buffers_bytes.",
                m.buffers as f64,
            ),
            ("node_memory_Cached_bytes", "Memory information field Cached_bytes.", m.cached as f64),
            (
                "node_memory_SwapTotal_bytes",
                "Memory information field SwapTotal_bytes.",
                m.swap_total as f64,
            ),
            (
                "node_memory_SwapFree_bytes",
                "Memory information field SwapFree_bytes.",
                m.swap_free as f64,
            ),
            ("node_memory_Shmem_bytes", "Memory information field Shmem_bytes.", opt(m.shmem)),
            ("node_memory_Slab_bytes", "Memory information field Slab_bytes.", m.slab as f64),
            ("node_memory_Dirty_bytes", "Memory information field Dirty_bytes.", m.dirty as f64),
            (
                "node_memory_Writeback_bytes",
                "Memory information field Writeback_bytes.",
                m.writeback as f64,
            ),
        ];
        Ok(fields
            .into_iter()
            .map(|(name, help, value)| FamilySample::single(name, help, Kind::Gauge, value))
            .collect())
    }
}
