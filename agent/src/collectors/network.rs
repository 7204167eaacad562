//! `/proc/net/dev`: per interface byte, packet, error and drop counters
//! under node_exporter's names. Loopback and veth pairs are excluded by
//! default (`[network] exclude`).

use curvemon_protocol::Kind;
use procfs::net::InterfaceDeviceStatus;
use regex_lite::Regex;

use super::{Collector, FamilySample, label};
use crate::roots::{FileCache, ProcReadError, Producer, Roots};

/// The `/proc/net/dev` collector.
#[derive(Debug)]
pub struct Network {
    exclude: Regex,
    files: FileCache,
}

impl Network {
    /// A collector skipping interfaces whose name matches `exclude`.
    pub fn new(exclude: Regex) -> Self {
        Network { exclude, files: FileCache::default() }
    }
}

impl Collector for Network {
    fn name(&self) -> &'static str {
        "network"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let status: InterfaceDeviceStatus =
            self.files.parse(roots.path("net/dev"), Producer::Records)?;
        let c = Kind::Counter;
        let mut families = [
            FamilySample::new(
                "node_network_receive_bytes_total",
                "Network device statistic receive_bytes.",
                c,
            ),
            FamilySample::new(
                "node_network_receive_packets_total",
                "Network device statistic receive_packets.",
                c,
            ),
            FamilySample::new(
                "node_network_receive_errs_total",
                "Network device statistic receive_errs.",
                c,
            ),
            FamilySample::new(
                "node_network_receive_drop_total",
                "Network device statistic receive_drop.",
                c,
            ),
            FamilySample::new(
                "node_network_transmit_bytes_total",
                "Network device statistic transmit_bytes.",
                c,
            ),
            FamilySample::new(
                "node_network_transmit_packets_total",
                "Network device statistic transmit_packets.",
                c,
            ),
            FamilySample::new(
                "node_network_transmit_errs_total",
                "Network device statistic transmit_errs.",
                c,
            ),
            FamilySample::new(
                "node_network_transmit_drop_total",
                "Network device statistic transmit_drop.",
                c,
            ),
        ];
        // procfs gives a HashMap; sort so the schema does not change order.
        let mut devices: Vec<_> =
            status.0.values().filter(|d| !self.exclude.is_match(&d.name)).collect();
        devices.sort_by(|a, b| a.name.cmp(&b.name));
        for d in devices {
            let values = [
                d.recv_bytes,
                d.recv_packets,
                d.recv_errs,
                d.recv_drop,
                d.sent_bytes,
                d.sent_packets,
                d.sent_errs,
                d.sent_drop,
            ];
            for (family, value) in families.iter_mut().zip(values) {
                family.push(vec![label("device", d.name.clone())], value as f64);
            }
        }
        Ok(families.into_iter().filter(|f| !f.series.is_empty()).collect())
    }
}
