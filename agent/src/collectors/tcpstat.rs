//! `/proc/net/tcp` and `/proc/net/tcp6`: TCP connections per state, as
//! node_exporter's `node_tcp_connection_states{state}`.
//!
//! Only the state column is read (no address parsing, no allocation per
//! socket), so a host with many thousands of connections stays cheap. All
//! eleven states are always reported, so the schema does not change with
//! traffic.

use curvemon_protocol::Kind;

use super::{Collector, FamilySample, label};
use crate::roots::{ProcReadError, Roots};

/// Kernel state numbers 1..=11 (include/net/tcp_states.h), node_exporter's names.
const STATES: [&str; 11] = [
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
];

/// The tcpstat collector.
#[derive(Debug, Default)]
pub struct Tcpstat;

/// Adds the states in one `/proc/net/tcp`-format text to `counts`.
///
/// # Errors
/// A line whose state column is not hexadecimal.
pub fn count_states(text: &str, counts: &mut [u64; 11]) -> Result<(), String> {
    for line in text.lines().skip(1) {
        let Some(state) = line.split_whitespace().nth(3) else { continue };
        let n = u8::from_str_radix(state, 16)
            .map_err(|_| format!("state {state:?} is not hexadecimal in {line:?}"))?;
        // 12 (NEW_SYN_RECV) is internal and never listed; ignore unknowns.
        if (1..=11).contains(&n) {
            counts[usize::from(n) - 1] += 1;
        }
    }
    Ok(())
}

impl Collector for Tcpstat {
    fn name(&self) -> &'static str {
        "tcpstat"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let mut counts = [0u64; 11];
        for (file, required) in [("net/tcp", true), ("net/tcp6", false)] {
            let path = roots.path(file);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    count_states(&text, &mut counts).map_err(|e| ProcReadError::other(path, e))?
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
                Err(e) => return Err(ProcReadError { path, source: e.into() }),
            }
        }
        let mut family = FamilySample::new(
            "node_tcp_connection_states",
            "Number of connection states.",
            Kind::Gauge,
        );
        for (state, count) in STATES.iter().zip(counts) {
            family.push(vec![label("state", *state)], count as f64);
        }
        Ok(vec![family])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_state_column() {
        let text = "  sl  local_address rem_address   st tx_queue\n\
                    0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n\
                    1: 0100007F:1F90 0100007F:D2A4 01 00000000:00000000\n\
                    2: 0100007F:D2A4 0100007F:1F90 06 00000000:00000000\n\
                    3: 0100007F:D2A5 0100007F:1F90 01 00000000:00000000\n";
        let mut counts = [0; 11];
        count_states(text, &mut counts).unwrap();
        assert_eq!(counts[0], 2, "established");
        assert_eq!(counts[5], 1, "time_wait");
        assert_eq!(counts[9], 1, "listen");
        assert!(count_states("h\n0: a b zz\n", &mut counts).is_err());
    }
}
