//! TCP connections per state, as node_exporter's
//! `node_tcp_connection_states{state}`.
//!
//! On the live system the counts come from netlink `sock_diag` (what `ss`
//! uses): the kernel builds `/proc/net/tcp` by walking its whole socket
//! hash table, which costs about a millisecond per read even on an idle
//! host, while a netlink dump costs a few microseconds per socket. Under
//! another procfs root (fixture trees) the files are read instead, and so
//! they are if netlink is refused. All eleven states are always reported,
//! so the schema does not change with traffic.

use std::{os::fd::OwnedFd, path::Path};

use curvemon_protocol::Kind;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, netlink};
use tracing::debug;

use super::{Collector, FamilySample, label};
use crate::roots::{FileCache, ProcReadError, Roots};

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
pub struct Tcpstat {
    files: FileCache,
    /// The netlink socket, once opened; `None` after netlink was refused.
    netlink: Option<Option<OwnedFd>>,
    seq: u32,
}

/// Adds the states in one `/proc/net/tcp`-format text to `counts`.
///
/// # Errors
/// A line whose state column is not hexadecimal.
pub fn count_states(text: &str, counts: &mut [u64; 11]) -> Result<(), String> {
    for line in text.lines().skip(1) {
        let Some(state) = line.split_whitespace().nth(3) else { continue };
        let n = u8::from_str_radix(state, 16)
            .map_err(|_| format!("state {state:?} is not hexadecimal in {line:?}"))?;
        add(n, counts);
    }
    Ok(())
}

fn add(state: u8, counts: &mut [u64; 11]) {
    // 12 (NEW_SYN_RECV) is internal and never listed; ignore unknowns.
    if (1..=11).contains(&state) {
        counts[usize::from(state) - 1] += 1;
    }
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const IPPROTO_TCP: u8 = 6;

/// `nlmsghdr` + `inet_diag_req_v2` asking for every TCP socket of `family`.
fn dump_request(family: u8, seq: u32) -> [u8; 72] {
    let mut req = [0u8; 72];
    req[0..4].copy_from_slice(&72u32.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    req[16] = family;
    req[17] = IPPROTO_TCP;
    // idiag_states: bits 1..=11, every state.
    req[20..24].copy_from_slice(&0x0ffe_u32.to_ne_bytes());
    req
}

/// Counts the states in a dump's replies into `counts`; `Ok(true)` at the end.
///
/// # Errors
/// The kernel's error reply, or a truncated message.
pub fn count_reply(buf: &[u8], counts: &mut [u64; 11]) -> Result<bool, String> {
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        if len < 16 || at + len > buf.len() {
            return Err(format!("netlink message of {len} bytes at offset {at} of {}", buf.len()));
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = buf
                    .get(at + 16..at + 20)
                    .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                return Err(format!("sock_diag error {}", -code));
            }
            _ => {
                // inet_diag_msg: family, then state.
                if let Some(&state) = buf.get(at + 17) {
                    add(state, counts);
                }
            }
        }
        at += (len + 3) & !3;
    }
    Ok(false)
}

impl Tcpstat {
    fn socket(&mut self) -> Option<&OwnedFd> {
        self.netlink
            .get_or_insert_with(|| {
                rustix::net::socket(
                    AddressFamily::NETLINK,
                    SocketType::DGRAM,
                    Some(netlink::SOCK_DIAG),
                )
                .map_err(
                    |e| debug!(error = %e, "No netlink sock_diag; reading /proc/net/tcp instead."),
                )
                .ok()
            })
            .as_ref()
    }

    fn by_netlink(&mut self, counts: &mut [u64; 11]) -> Option<()> {
        let mut buf = vec![0u8; 32 * 1024];
        for family in [AddressFamily::INET, AddressFamily::INET6] {
            self.seq = self.seq.wrapping_add(1);
            let request = dump_request(family.as_raw() as u8, self.seq);
            let socket = self.socket()?;
            let kernel = netlink::SocketAddrNetlink::new(0, 0);
            rustix::net::sendto(socket, &request, SendFlags::empty(), &kernel).ok()?;
            loop {
                let (_, n) = rustix::net::recv(socket, &mut buf[..], RecvFlags::empty()).ok()?;
                match count_reply(&buf[..n], counts) {
                    Ok(true) => break,
                    Ok(false) => continue,
                    // IPv6 disabled: no sockets of that family to count.
                    Err(_) if family == AddressFamily::INET6 => break,
                    Err(e) => {
                        debug!(error = %e, "sock_diag failed; reading /proc/net/tcp instead.");
                        self.netlink = Some(None);
                        return None;
                    }
                }
            }
        }
        Some(())
    }

    fn by_files(&mut self, roots: &Roots, counts: &mut [u64; 11]) -> Result<(), ProcReadError> {
        for (file, required) in [("net/tcp", true), ("net/tcp6", false)] {
            let path = roots.path(file);
            match self.files.read(path.clone()) {
                Ok(text) => {
                    count_states(text, counts).map_err(|e| ProcReadError::other(path, e))?
                }
                Err(e) if e.is_not_found() && !required => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Collector for Tcpstat {
    fn name(&self) -> &'static str {
        "tcpstat"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let mut counts = [0u64; 11];
        let live = roots.root() == Path::new("/proc");
        if !(live && self.by_netlink(&mut counts).is_some()) {
            counts = [0; 11];
            self.by_files(roots, &mut counts)?;
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

    #[test]
    fn netlink_reply_parsing() {
        let msg = |kind: u16, state: u8| {
            let mut m = vec![0u8; 88];
            m[0..4].copy_from_slice(&88u32.to_ne_bytes());
            m[4..6].copy_from_slice(&kind.to_ne_bytes());
            m[16] = 2;
            m[17] = state;
            m
        };
        let mut buf = msg(SOCK_DIAG_BY_FAMILY, 10);
        buf.extend(msg(SOCK_DIAG_BY_FAMILY, 1));
        let mut counts = [0; 11];
        assert_eq!(count_reply(&buf, &mut counts), Ok(false));
        assert_eq!((counts[9], counts[0]), (1, 1));
        let mut done = vec![0u8; 20];
        done[0..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert_eq!(count_reply(&done, &mut counts), Ok(true));
        let mut error = done.clone();
        error[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        error[16..20].copy_from_slice(&(-2i32).to_ne_bytes());
        assert_eq!(count_reply(&error, &mut counts), Err("sock_diag error 2".into()));
        assert!(count_reply(&buf[..40], &mut counts).is_err(), "truncated");
    }

    #[test]
    fn netlink_sees_live_sockets_like_proc_net_tcp() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        let mut collector = Tcpstat::default();
        let mut by_netlink = [0; 11];
        assert!(collector.by_netlink(&mut by_netlink).is_some(), "netlink sock_diag works here");
        assert!(by_netlink[9] >= 1, "our listener: {by_netlink:?}");
        assert!(by_netlink[0] >= 2, "both ends of our connection: {by_netlink:?}");
        // Listening sockets are stable: both sources must agree on them.
        let roots = Roots::new("/proc");
        let mut by_files = [0; 11];
        collector.by_files(&roots, &mut by_files).unwrap();
        assert_eq!(by_netlink[9], by_files[9], "listen: netlink {by_netlink:?} files {by_files:?}");
    }
}
