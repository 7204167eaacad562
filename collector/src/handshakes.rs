//! Who failed a CURVE handshake. The socket monitor libzmq 4.3 exports (v1)
//! names only the listening endpoint when a handshake fails on a bound
//! socket, so the peer's address is taken from the connection itself.
//!
//! `ACCEPTED` carries the new connection's file descriptor: the router thread
//! takes a duplicate of it (`pidfd_getfd` on its own process: safe code, and
//! the duplicate cannot be closed under it) and asks that for the peer. A
//! failed handshake is reported as a failure event followed, from the same
//! I/O thread, by the `DISCONNECTED` event of its connection (same fd), so
//! the failure is logged when that arrives, with the address recorded for
//! the fd.
//!
//! The one race: libzmq may close the descriptor (and reuse its number for
//! the next connection) before the router thread looks it up. libzmq emits
//! `DISCONNECTED` before it closes, so a look-up is trusted only when no
//! `DISCONNECTED` for that fd was queued before the look-up returned, which
//! the caller checks by reading the monitor queue once more afterwards. An
//! untrusted address is reported as unknown rather than guessed. Over a real
//! network a failure is at least a round trip after the accept; on loopback
//! a peer that fails within microseconds may stay unknown.
//!
//! This relies on the context having one I/O thread (the default, and what
//! the collector uses): events of one connection's failure are then never
//! interleaved with another's.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use curvemon_link::{Event, EventKind};

/// How the address of a new connection is found: by the fd libzmq reported.
pub trait PeerLookup {
    /// The peer of the connection on descriptor `fd` now, if it can be read.
    fn peer_of(&self, fd: u32) -> Option<SocketAddr>;
}

/// Looks up peers through duplicates of libzmq's descriptors.
#[derive(Debug)]
pub struct OwnDescriptors {
    /// A pidfd of this process; `None` where the kernel (before 5.6) or a
    /// seccomp filter refuses pidfds: every address is then unknown.
    pidfd: Option<OwnedFd>,
}

impl OwnDescriptors {
    /// Opens a pidfd of this process, logging once if that is not possible.
    pub fn open() -> Self {
        let pid = rustix::process::getpid();
        match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(pidfd) => OwnDescriptors { pidfd: Some(pidfd) },
            Err(error) => {
                tracing::warn!(%error, "Cannot open a pidfd of this process: handshake failures will be logged without the peer's address.");
                OwnDescriptors { pidfd: None }
            }
        }
    }
}

impl PeerLookup for OwnDescriptors {
    fn peer_of(&self, fd: u32) -> Option<SocketAddr> {
        let pidfd = self.pidfd.as_ref()?;
        let fd = i32::try_from(fd).ok()?;
        let copy =
            rustix::process::pidfd_getfd(pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
                .ok()?;
        let address = rustix::net::getpeername(&copy).ok()??;
        SocketAddr::try_from(address).ok()
    }
}

/// A failed handshake, ready to be logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The failure event (its kind and libzmq's code).
    pub event: Event,
    /// The peer, when it could be read reliably.
    pub peer: Option<SocketAddr>,
}

/// Connections between `ACCEPTED` and `DISCONNECTED`, with their peers.
#[derive(Debug, Default)]
pub struct Handshakes {
    open: HashMap<u32, Option<SocketAddr>>,
    failed: Option<Event>,
}

impl Handshakes {
    /// Peers for a batch of monitor events: the looked-up address at the
    /// index of each `ACCEPTED`, `None` elsewhere. A connection already
    /// disconnected later in the batch is not looked up (its fd may be
    /// another connection's by now).
    pub fn look_up(batch: &[Event], lookup: &impl PeerLookup) -> Vec<Option<SocketAddr>> {
        batch
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let closed_since = || batch[i + 1..].iter().any(|e| closes(e, event.value));
                (event.kind == EventKind::Accepted && !closed_since())
                    .then(|| lookup.peer_of(event.value))
                    .flatten()
            })
            .collect()
    }

    /// Forgets look-ups that may have happened after their connection was
    /// closed: those whose `DISCONNECTED` is in `next`, the events read
    /// after the look-ups returned.
    pub fn distrust(batch: &[Event], peers: &mut [Option<SocketAddr>], next: &[Event]) {
        for (event, peer) in batch.iter().zip(peers.iter_mut()) {
            if event.kind == EventKind::Accepted && next.iter().any(|e| closes(e, event.value)) {
                *peer = None;
            }
        }
    }

    /// Follows one event; returns a failure to log once its connection's
    /// `DISCONNECTED` arrives.
    pub fn on_event(&mut self, event: &Event, peer: Option<SocketAddr>) -> Option<Failure> {
        match event.kind {
            EventKind::Accepted => {
                self.open.insert(event.value, peer);
                None
            }
            EventKind::HandshakeFailedProtocol | EventKind::HandshakeFailedNoDetail => {
                self.failed = Some(event.clone());
                None
            }
            EventKind::Disconnected => {
                let peer = self.open.remove(&event.value).flatten();
                self.failed.take().map(|event| Failure { event, peer })
            }
            _ => None,
        }
    }

    /// Connections being tracked (for tests: the map must not grow).
    pub fn tracked(&self) -> usize {
        self.open.len()
    }
}

fn closes(event: &Event, fd: u32) -> bool {
    event.kind == EventKind::Disconnected && event.value == fd
}

/// One warning per peer address and failure code per minute: a
/// misconfigured agent retries every few seconds, and one peer's noise must
/// hide neither another peer nor a new kind of failure.
#[derive(Debug, Default)]
pub struct PeerLogLimit {
    last: HashMap<(Option<IpAddr>, u32), (Instant, u64)>,
}

impl PeerLogLimit {
    const PERIOD: Duration = Duration::from_secs(60);
    /// Beyond this many remembered peers, those quiet for a period are forgotten.
    const REMEMBERED: usize = 4096;

    /// `Some(held back since the last line)` if a line about `peer` failing
    /// with `code` may be logged now.
    pub fn allow(&mut self, peer: Option<IpAddr>, code: u32, now: Instant) -> Option<u64> {
        if self.last.len() >= Self::REMEMBERED {
            self.last.retain(|_, (at, _)| now.duration_since(*at) < Self::PERIOD);
        }
        match self.last.get_mut(&(peer, code)) {
            Some((at, held)) if now.duration_since(*at) < Self::PERIOD => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                *at = now;
                Some(std::mem::take(held))
            }
            None => {
                self.last.insert((peer, code), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, value: u32) -> Event {
        Event { kind, value, endpoint: "tcp://0.0.0.0:5556".into() }
    }

    /// Descriptor 7 belongs to one peer, 8 to another; others are unknown.
    struct Table;
    impl PeerLookup for Table {
        fn peer_of(&self, fd: u32) -> Option<SocketAddr> {
            match fd {
                7 => Some("192.0.2.7:40001".parse().unwrap()),
                8 => Some("192.0.2.8:40002".parse().unwrap()),
                _ => None,
            }
        }
    }

    fn follow(h: &mut Handshakes, batch: &[Event], next: &[Event]) -> Vec<Failure> {
        let mut peers = Handshakes::look_up(batch, &Table);
        Handshakes::distrust(batch, &mut peers, next);
        batch.iter().zip(peers).filter_map(|(e, p)| h.on_event(e, p)).collect()
    }

    #[test]
    fn a_failure_is_reported_with_the_peer_of_its_descriptor() {
        let mut h = Handshakes::default();
        let failed = ev(EventKind::HandshakeFailedProtocol, 0x1100_0002);
        assert!(
            follow(&mut h, &[ev(EventKind::Accepted, 7), ev(EventKind::Accepted, 8)], &[])
                .is_empty()
        );
        let out = follow(&mut h, &[failed.clone(), ev(EventKind::Disconnected, 8)], &[]);
        assert_eq!(
            out,
            vec![Failure { event: failed, peer: Some("192.0.2.8:40002".parse().unwrap()) }]
        );
        // A clean disconnect reports nothing, and nothing stays tracked.
        assert!(follow(&mut h, &[ev(EventKind::Disconnected, 7)], &[]).is_empty());
        assert_eq!(h.tracked(), 0);
    }

    #[test]
    fn a_descriptor_closed_before_the_look_up_gives_no_address() {
        let mut h = Handshakes::default();
        let failed = ev(EventKind::HandshakeFailedNoDetail, 104);
        // Closed within the same batch: fd 7 may already be someone else's.
        let out = follow(
            &mut h,
            &[ev(EventKind::Accepted, 7), failed.clone(), ev(EventKind::Disconnected, 7)],
            &[],
        );
        assert_eq!(out, vec![Failure { event: failed.clone(), peer: None }]);
        // Closed in the events read after the look-up: not trusted either.
        let first = [ev(EventKind::Accepted, 7)];
        let next = [failed.clone(), ev(EventKind::Disconnected, 7)];
        assert!(follow(&mut h, &first, &next).is_empty());
        assert_eq!(follow(&mut h, &next, &[]), vec![Failure { event: failed, peer: None }]);
        assert_eq!(h.tracked(), 0);
    }

    #[test]
    fn refusals_by_zap_are_not_reported_twice() {
        let mut h = Handshakes::default();
        follow(&mut h, &[ev(EventKind::Accepted, 7)], &[]);
        let out = follow(
            &mut h,
            &[ev(EventKind::HandshakeFailedAuth, 400), ev(EventKind::Disconnected, 7)],
            &[],
        );
        assert!(out.is_empty(), "the ZAP handler logs these itself");
    }

    #[test]
    fn warnings_are_limited_per_peer() {
        let mut limit = PeerLogLimit::default();
        let now = Instant::now();
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        let s = Duration::from_secs;
        assert_eq!(limit.allow(a, 1, now), Some(0));
        assert_eq!(limit.allow(a, 1, now + s(5)), None);
        assert_eq!(limit.allow(b, 1, now + s(6)), Some(0), "another peer is heard");
        assert_eq!(limit.allow(a, 2, now + s(7)), Some(0), "another failure is heard");
        assert_eq!(limit.allow(a, 1, now + s(61)), Some(1));
    }

    #[test]
    fn own_descriptors_name_the_peer_of_a_real_connection() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let fd = u32::try_from(server.as_raw_fd()).unwrap();
        assert_eq!(OwnDescriptors::open().peer_of(fd), Some(client.local_addr().unwrap()));
        drop(server);
        // The number may already be another test's socket, never this peer's.
        assert_ne!(OwnDescriptors::open().peer_of(fd), Some(client.local_addr().unwrap()));
    }
}
