//! `/proc/net/sockstat` and `/proc/net/sockstat6`: sockets in use per
//! protocol, TIME_WAIT and orphaned TCP sockets, socket buffer memory, as
//! `node_sockstat_<PROTO>_<field>`. Memory is in pages; node_exporter also
//! reports it in bytes (`_mem_bytes`), and so does this.

use std::borrow::Cow;

use curvemon_protocol::Kind;

use super::{Collector, FamilySample};
use crate::roots::{FileCache, ProcReadError, Roots};

/// The sockstat collector.
#[derive(Debug, Default)]
pub struct Sockstat {
    files: FileCache,
}

/// Parses `PROTO: key value key value` lines into `(PROTO_key, value)`.
///
/// # Errors
/// A key without a value or a value that is not a number.
pub fn parse(text: &str) -> Result<Vec<(String, f64)>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (proto, rest) =
            line.split_once(':').ok_or_else(|| format!("no `PROTO:` in {line:?}"))?;
        let words: Vec<&str> = rest.split_whitespace().collect();
        if !words.len().is_multiple_of(2) {
            return Err(format!("{proto}: odd number of words in {rest:?}"));
        }
        for pair in words.chunks_exact(2) {
            let value = pair[1]
                .parse::<f64>()
                .map_err(|_| format!("{proto} {}: {:?} is not a number", pair[0], pair[1]))?;
            out.push((format!("{proto}_{}", pair[0]), value));
        }
    }
    Ok(out)
}

impl Collector for Sockstat {
    fn name(&self) -> &'static str {
        "sockstat"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let mut stats = Vec::new();
        for (file, required) in [("net/sockstat", true), ("net/sockstat6", false)] {
            let path = roots.path(file);
            match self.files.read_one_piece(path.clone()) {
                Ok(text) => stats.extend(parse(text).map_err(|e| ProcReadError::other(path, e))?),
                Err(e) if e.is_not_found() && !required => {}
                Err(e) => return Err(e),
            }
        }
        let page = roots.page_size() as f64;
        let mut out = Vec::with_capacity(stats.len() + 4);
        for (name, value) in stats {
            let in_pages = name.ends_with("_mem") && !name.starts_with("FRAG");
            out.push(gauge(
                format!("node_sockstat_{name}"),
                format!("Number of {name} (from sockstat)."),
                value,
            ));
            if in_pages {
                out.push(gauge(
                    format!("node_sockstat_{name}_bytes"),
                    format!("Bytes of {name} (from sockstat)."),
                    value * page,
                ));
            }
        }
        Ok(out)
    }
}

fn gauge(name: String, help: String, value: f64) -> FamilySample {
    FamilySample {
        name: Cow::Owned(name),
        help: Cow::Owned(help),
        kind: Kind::Gauge,
        series: vec![(Vec::new(), value)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs() {
        let got = parse("sockets: used 8\nTCP: inuse 1 orphan 0 tw 3\n").unwrap();
        assert_eq!(
            got,
            vec![
                ("sockets_used".into(), 8.0),
                ("TCP_inuse".into(), 1.0),
                ("TCP_orphan".into(), 0.0),
                ("TCP_tw".into(), 3.0)
            ]
        );
        assert!(parse("TCP: inuse\n").is_err());
        assert!(parse("TCP: inuse x\n").is_err());
    }
}
