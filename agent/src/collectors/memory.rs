//! `/proc/meminfo`: the fields people chart, in bytes, under node_exporter's
//! names (`node_memory_<Field>_bytes`; huge page counts have no unit).

use curvemon_protocol::Kind;
use procfs::Meminfo;

use super::{Collector, FamilySample};
use crate::roots::{FileCache, ProcReadError, Roots};

/// The `/proc/meminfo` collector.
#[derive(Debug, Default)]
pub struct Memory {
    files: FileCache,
}

impl Collector for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let m: Meminfo = self.files.parse(roots.path("meminfo"))?;
        // Fields that older kernels lack are NaN rather than a made-up zero.
        let opt = |v: Option<u64>| v.map_or(f64::NAN, |v| v as f64);
        let fields: [(&'static str, &'static str, f64); 17] = [
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
                "node_memory_SwapCached_bytes",
                "Memory information field SwapCached_bytes.",
                m.swap_cached as f64,
            ),
            ("node_memory_Active_bytes", "Memory information field Active_bytes.", m.active as f64),
            (
                "node_memory_Inactive_bytes",
                "Memory information field Inactive_bytes.",
                m.inactive as f64,
            ),
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
            ("node_memory_Dirty_bytes", "Memory information field Dirty_bytes.", m.dirty as f64),
            (
                "node_memory_Writeback_bytes",
                "Memory information field Writeback_bytes.",
                m.writeback as f64,
            ),
            ("node_memory_Shmem_bytes", "Memory information field Shmem_bytes.", opt(m.shmem)),
            ("node_memory_Slab_bytes", "Memory information field Slab_bytes.", m.slab as f64),
            (
                "node_memory_SReclaimable_bytes",
                "Memory information field SReclaimable_bytes.",
                opt(m.s_reclaimable),
            ),
            (
                "node_memory_HugePages_Total",
                "Memory information field HugePages_Total.",
                opt(m.hugepages_total),
            ),
            (
                "node_memory_HugePages_Free",
                "Memory information field HugePages_Free.",
                opt(m.hugepages_free),
            ),
        ];
        let mut out: Vec<FamilySample> = fields
            .into_iter()
            .map(|(name, help, value)| FamilySample::single(name, help, Kind::Gauge, value))
            .collect();
        out.push(FamilySample::single(
            "node_memory_Hugepagesize_bytes",
            "Memory information field Hugepagesize_bytes.",
            Kind::Gauge,
            opt(m.hugepagesize),
        ));
        Ok(out)
    }
}
