//! `/proc/sys/fs/file-nr`: allocated file handles and the system maximum.

use curvemon_protocol::Kind;

use super::{Collector, FamilySample};
use crate::roots::{FileCache, ProcReadError, Roots};

/// The file-nr collector.
#[derive(Debug, Default)]
pub struct Filefd {
    files: FileCache,
}

impl Collector for Filefd {
    fn name(&self) -> &'static str {
        "filefd"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let text = self.files.read_one_piece(roots.path("sys/fs/file-nr"))?.trim();
        // "allocated  unused(always 0 since 2.6)  maximum"
        let numbers: Vec<f64> = text.split_whitespace().filter_map(|n| n.parse().ok()).collect();
        let [allocated, _, maximum] = numbers[..] else {
            return Err(ProcReadError::other(
                roots.path("sys/fs/file-nr"),
                format!("expected three numbers, got {text:?}"),
            ));
        };
        Ok(vec![
            FamilySample::single(
                "node_filefd_allocated",
                "File descriptor statistics: allocated.",
                Kind::Gauge,
                allocated,
            ),
            FamilySample::single(
                "node_filefd_maximum",
                "File descriptor statistics: maximum.",
                Kind::Gauge,
                maximum,
            ),
        ])
    }
}
