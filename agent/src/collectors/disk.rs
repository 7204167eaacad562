//! `/proc/diskstats`: per block device I/O counters under node_exporter's
//! names. Partitions, loop, ram and zram devices are excluded by default
//! (`[disk] exclude` in the config file).

use curvemon_protocol::Kind;
use procfs::DiskStats;
use regex_lite::Regex;

use super::{Collector, FamilySample, label};
use crate::roots::{FileCache, ProcReadError, Producer, Roots};

/// Sectors in /proc/diskstats are always 512 bytes, whatever the device's.
const SECTOR: f64 = 512.0;

/// The `/proc/diskstats` collector.
#[derive(Debug)]
pub struct Disk {
    exclude: Regex,
    files: FileCache,
}

impl Disk {
    /// A collector skipping devices whose name matches `exclude`.
    pub fn new(exclude: Regex) -> Self {
        Disk { exclude, files: FileCache::default() }
    }
}

impl Collector for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let stats: DiskStats = self.files.parse(roots.path("diskstats"), Producer::Records)?;
        let c = Kind::Counter;
        let mut families = [
            FamilySample::new(
                "node_disk_reads_completed_total",
                "The total number of reads completed successfully.",
                c,
            ),
            FamilySample::new(
                "node_disk_reads_merged_total",
                "The total number of reads merged.",
                c,
            ),
            FamilySample::new(
                "node_disk_read_bytes_total",
                "The total number of bytes read successfully.",
                c,
            ),
            FamilySample::new(
                "node_disk_read_time_seconds_total",
                "The total number of seconds spent by all reads.",
                c,
            ),
            FamilySample::new(
                "node_disk_writes_completed_total",
                "The total number of writes completed successfully.",
                c,
            ),
            FamilySample::new("node_disk_writes_merged_total", "The number of writes merged.", c),
            FamilySample::new(
                "node_disk_written_bytes_total",
                "The total number of bytes written successfully.",
                c,
            ),
            FamilySample::new(
                "node_disk_write_time_seconds_total",
                "This is the total number of seconds spent by all writes.",
                c,
            ),
            FamilySample::new(
                "node_disk_io_now",
                "The number of I/Os currently in progress.",
                Kind::Gauge,
            ),
            FamilySample::new(
                "node_disk_io_time_seconds_total",
                "Total seconds spent doing I/Os.",
                c,
            ),
            FamilySample::new(
                "node_disk_io_time_weighted_seconds_total",
                "The weighted # of seconds spent doing I/Os.",
                c,
            ),
        ];
        for d in stats.0.iter().filter(|d| !self.exclude.is_match(&d.name)) {
            let values = [
                d.reads as f64,
                d.merged as f64,
                d.sectors_read as f64 * SECTOR,
                d.time_reading as f64 / 1000.0,
                d.writes as f64,
                d.writes_merged as f64,
                d.sectors_written as f64 * SECTOR,
                d.time_writing as f64 / 1000.0,
                d.in_progress as f64,
                d.time_in_progress as f64 / 1000.0,
                d.weighted_time_in_progress as f64 / 1000.0,
            ];
            for (family, value) in families.iter_mut().zip(values) {
                family.push(vec![label("device", d.name.clone())], value);
            }
        }
        Ok(families.into_iter().filter(|f| !f.series.is_empty()).collect())
    }
}
