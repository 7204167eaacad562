//! `/proc/net/snmp`, `/proc/net/netstat` and `/proc/net/snmp6`: protocol
//! counters (TCP retransmits and resets, UDP errors, listen drops, ...) as
//! `node_netstat_<Proto>_<Field>`, node_exporter's default field set.
//!
//! The first two files come in pairs of lines, `Proto: names...` then
//! `Proto: values...`; snmp6 has one `Name value` per line.

use std::{borrow::Cow, collections::HashMap, path::PathBuf, sync::OnceLock};

use curvemon_protocol::Kind;
use regex_lite::Regex;

use super::{Collector, FamilySample};
use crate::roots::{FileCache, ProcReadError, Roots};

/// node_exporter's default `--collector.netstat.fields`.
const FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";

/// Values that are levels, not running totals.
const GAUGES: [&str; 2] = ["Tcp_CurrEstab", "Ip_Forwarding"];

fn fields() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(FIELDS).unwrap_or_else(|e| unreachable!("built-in pattern: {e}")))
}

/// The netstat collector. It remembers, per header line, which columns the
/// field set selects, so a steady read parses a handful of numbers instead
/// of formatting and matching every field name.
#[derive(Debug, Default)]
pub struct Netstat {
    files: FileCache,
    selections: HashMap<String, Vec<(usize, String)>>,
    /// snmp6 line names and what each became (`None`: not selected).
    snmp6: HashMap<String, Option<String>>,
}

impl Netstat {
    /// The selected `(Proto_Field, value)` of one paired-line file.
    fn paired(&mut self, path: PathBuf, out: &mut Vec<(String, f64)>) -> Result<(), ProcReadError> {
        let text = self.files.read_one_piece(path.clone())?;
        let bad = |e: String| ProcReadError::other(path.clone(), e);
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        while let Some(header) = lines.next() {
            let values =
                lines.next().ok_or_else(|| bad(format!("no value line after {header:?}")))?;
            let selection = self.selections.entry(header.to_string()).or_insert_with(|| {
                let (proto, names) = header.split_once(':').unwrap_or(("", ""));
                names
                    .split_whitespace()
                    .enumerate()
                    .map(|(i, name)| (i, format!("{proto}_{name}")))
                    .filter(|(_, full)| fields().is_match(full))
                    .collect()
            });
            if selection.is_empty() {
                continue;
            }
            let (_, nums) =
                values.split_once(':').ok_or_else(|| bad(format!("no `Proto:` in {values:?}")))?;
            let nums: Vec<&str> = nums.split_whitespace().collect();
            for (i, name) in selection.iter() {
                let num =
                    nums.get(*i).ok_or_else(|| bad(format!("{name}: missing from {values:?}")))?;
                let value = num
                    .parse::<f64>()
                    .map_err(|_| bad(format!("{name}: {num:?} is not a number")))?;
                out.push((name.clone(), value));
            }
        }
        Ok(())
    }
}

/// Parses snmp6's `Ip6InOctets  123` lines into `(Ip6_InOctets, 123)`.
pub fn parse_snmp6(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (name, value) = (parts.next()?, parts.next()?.parse::<f64>().ok()?);
            // Split after the protocol prefix: Ip6, Icmp6, Udp6, UdpLite6.
            let at = ["UdpLite6", "Icmp6", "Udp6", "Ip6"]
                .iter()
                .find_map(|p| name.strip_prefix(p).map(|_| p.len()))?;
            Some((format!("{}_{}", &name[..at], &name[at..]), value))
        })
        .collect()
}

impl Collector for Netstat {
    fn name(&self) -> &'static str {
        "netstat"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let mut stats = Vec::new();
        self.paired(roots.path("net/snmp"), &mut stats)?;
        self.paired(roots.path("net/netstat"), &mut stats)?;
        // IPv6 may be disabled: then snmp6 is absent, and that is fine.
        match self.files.read_one_piece(roots.path("net/snmp6")) {
            Ok(text) => {
                for line in text.lines() {
                    let mut parts = line.split_ascii_whitespace();
                    let (Some(raw), Some(value)) = (parts.next(), parts.next()) else { continue };
                    let selected = self.snmp6.entry(raw.to_string()).or_insert_with(|| {
                        parse_snmp6(line)
                            .pop()
                            .map(|(name, _)| name)
                            .filter(|name| fields().is_match(name))
                    });
                    if let (Some(name), Ok(value)) = (selected, value.parse::<f64>()) {
                        stats.push((name.clone(), value));
                    }
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        Ok(stats
            .into_iter()
            .map(|(name, value)| {
                let kind =
                    if GAUGES.contains(&name.as_str()) { Kind::Gauge } else { Kind::Counter };
                FamilySample {
                    help: Cow::Owned(format!("Statistic {name}.")),
                    name: Cow::Owned(format!("node_netstat_{name}")),
                    kind,
                    series: vec![(Vec::new(), value)],
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_lines_keep_only_selected_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snmp");
        std::fs::write(
            &path,
            "Tcp: RtoAlgorithm ActiveOpens CurrEstab\nTcp: 1 42 3\nUdp: InDatagrams\nUdp: 7\n",
        )
        .unwrap();
        let mut netstat = Netstat::default();
        let mut out = Vec::new();
        netstat.paired(path.clone(), &mut out).unwrap();
        let expected =
            [("Tcp_ActiveOpens", 42.0), ("Tcp_CurrEstab", 3.0), ("Udp_InDatagrams", 7.0)];
        assert_eq!(out, expected.map(|(n, v)| (n.to_string(), v)));
        std::fs::write(&path, "Tcp: ActiveOpens\n").unwrap();
        assert!(
            netstat
                .paired(path.clone(), &mut out)
                .unwrap_err()
                .to_string()
                .contains("no value line")
        );
        std::fs::write(&path, "Tcp: ActiveOpens\nTcp: x\n").unwrap();
        assert!(netstat.paired(path, &mut out).unwrap_err().to_string().contains("not a number"));
    }

    #[test]
    fn snmp6_names() {
        let got =
            parse_snmp6("Ip6InOctets 100\nUdp6InDatagrams 5\nUdpLite6InErrors 0\nIcmp6OutMsgs 2\n");
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["Ip6_InOctets", "Udp6_InDatagrams", "UdpLite6_InErrors", "Icmp6_OutMsgs"]
        );
    }
}
