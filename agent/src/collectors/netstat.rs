//! `/proc/net/snmp`, `/proc/net/netstat` and `/proc/net/snmp6`: protocol
//! counters (TCP retransmits and resets, UDP errors, listen drops, ...) as
//! `node_netstat_<Proto>_<Field>`, node_exporter's default field set.
//!
//! The first two files come in pairs of lines, `Proto: names...` then
//! `Proto: values...`; snmp6 has one `Name value` per line.

use std::{borrow::Cow, sync::OnceLock};

use curvemon_protocol::Kind;
use regex::Regex;

use super::{Collector, FamilySample};
use crate::roots::{ProcReadError, Roots, read_text_file};

/// node_exporter's default `--collector.netstat.fields`.
const FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";

/// Values that are levels, not running totals.
const GAUGES: [&str; 2] = ["Tcp_CurrEstab", "Ip_Forwarding"];

fn fields() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(FIELDS).unwrap_or_else(|e| unreachable!("built-in pattern: {e}")))
}

/// The netstat collector.
#[derive(Debug, Default)]
pub struct Netstat;

/// Parses the paired-line format into `(Proto_Field, value)`.
///
/// # Errors
/// A header without its value line, or a count mismatch.
pub fn parse_paired(text: &str) -> Result<Vec<(String, f64)>, String> {
    let mut out = Vec::new();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    while let Some(header) = lines.next() {
        let values = lines.next().ok_or_else(|| format!("no value line after {header:?}"))?;
        let (proto, names) =
            header.split_once(':').ok_or_else(|| format!("no `Proto:` in {header:?}"))?;
        let (proto2, nums) =
            values.split_once(':').ok_or_else(|| format!("no `Proto:` in {values:?}"))?;
        if proto != proto2 {
            return Err(format!("header {proto:?} followed by values of {proto2:?}"));
        }
        let names: Vec<&str> = names.split_whitespace().collect();
        let nums: Vec<&str> = nums.split_whitespace().collect();
        if names.len() != nums.len() {
            return Err(format!("{proto}: {} names but {} values", names.len(), nums.len()));
        }
        for (name, num) in names.iter().zip(nums) {
            let value = num
                .parse::<f64>()
                .map_err(|_| format!("{proto} {name}: {num:?} is not a number"))?;
            out.push((format!("{proto}_{name}"), value));
        }
    }
    Ok(out)
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
        for file in ["net/snmp", "net/netstat"] {
            let path = roots.path(file);
            let text = read_text_file(path.clone())?;
            stats.extend(parse_paired(&text).map_err(|e| ProcReadError::other(path, e))?);
        }
        // IPv6 may be disabled: then snmp6 is absent, and that is fine.
        match read_text_file(roots.path("net/snmp6")) {
            Ok(text) => stats.extend(parse_snmp6(&text)),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        Ok(stats
            .into_iter()
            .filter(|(name, _)| fields().is_match(name))
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
    fn paired_lines() {
        let text =
            "Tcp: RtoAlgorithm ActiveOpens CurrEstab\nTcp: 1 42 3\nUdp: InDatagrams\nUdp: 7\n";
        assert_eq!(
            parse_paired(text).unwrap(),
            vec![
                ("Tcp_RtoAlgorithm".into(), 1.0),
                ("Tcp_ActiveOpens".into(), 42.0),
                ("Tcp_CurrEstab".into(), 3.0),
                ("Udp_InDatagrams".into(), 7.0)
            ]
        );
        assert!(parse_paired("Tcp: A B\nTcp: 1\n").unwrap_err().contains("2 names but 1 values"));
        assert!(parse_paired("Tcp: A\n").unwrap_err().contains("no value line"));
        assert!(parse_paired("Tcp: A\nUdp: 1\n").is_err());
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
