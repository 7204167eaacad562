//! Blocking connections with one deadline, for the helper threads that
//! talk to other services (scrapes, availability checks): resolve, connect
//! and every read and write finish by the deadline or fail with
//! [`FailureReason::Timeout`], and each failure says which step it was in.
//!
//! `getaddrinfo` cannot be interrupted, so a lookup runs on a thread of its
//! own that the caller stops waiting for at the deadline (the thread then
//! finishes on its own). Addresses written as numbers need no lookup.

use std::{
    io::{self, Read, Write},
    net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs},
    os::unix::net::UnixStream,
    path::PathBuf,
    sync::mpsc,
    time::{Duration, Instant},
};

use curvemon_protocol::FailureReason;

/// Why a step failed: a reason from the fixed set, and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The `reason` label.
    pub reason: FailureReason,
    /// What happened, for people.
    pub detail: String,
}

impl Failure {
    /// A failure of `reason`.
    pub fn new(reason: FailureReason, detail: impl Into<String>) -> Self {
        Failure { reason, detail: detail.into() }
    }

    /// An I/O error during `step` (a timeout is [`FailureReason::Timeout`];
    /// anything else is `other`).
    pub fn io(error: &io::Error, step: &str, other: FailureReason) -> Self {
        if is_timeout(error) {
            Failure::new(FailureReason::Timeout, format!("timed out {step}"))
        } else {
            Failure::new(other, format!("{step}: {error}"))
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

/// Where a service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A host name or address and a port.
    Tcp {
        /// Name or address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix socket.
    Unix(PathBuf),
}

impl Address {
    /// Parses `host:port`, `[v6]:port`, `host` (with `default_port`) or an
    /// absolute socket path.
    ///
    /// # Errors
    /// A sentence saying what is expected.
    pub fn parse(text: &str, default_port: Option<u16>) -> Result<Address, String> {
        if text.starts_with('/') {
            return Ok(Address::Unix(text.into()));
        }
        let (host, port) = if let Some(v6) = text.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| format!("{text:?}: missing ]"))?;
            (host, after.strip_prefix(':'))
        } else {
            match text.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                _ => (text, None),
            }
        };
        let port = match (port, default_port) {
            (Some(p), _) => p.parse().map_err(|_| format!("{text:?}: bad port {p:?}"))?,
            (None, Some(p)) => p,
            (None, None) => return Err(format!("{text:?}: expected host:port")),
        };
        if host.is_empty() {
            return Err(format!("{text:?}: no host"));
        }
        Ok(Address::Tcp { host: host.to_string(), port })
    }

    /// The host name, for TLS and `Host:` (None for a Unix socket).
    pub fn host(&self) -> Option<&str> {
        match self {
            Address::Tcp { host, .. } => Some(host),
            Address::Unix(_) => None,
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "{host}:{port}"),
            Address::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A point in time every step must finish by.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Deadline(Instant::now() + timeout)
    }

    /// The time left, or a timeout failure naming `step`.
    ///
    /// # Errors
    /// [`FailureReason::Timeout`] when none is left.
    pub fn left(self, step: &str) -> Result<Duration, Failure> {
        let left = self.0.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(Failure::new(FailureReason::Timeout, format!("timed out {step}")))
        } else {
            Ok(left)
        }
    }
}

/// Resolves `host` by the deadline.
///
/// # Errors
/// [`FailureReason::Dns`] when it does not resolve,
/// [`FailureReason::Timeout`] when the resolver has not answered in time.
pub fn resolve(host: &str, port: u16, deadline: Deadline) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (answer, answers) = mpsc::sync_channel(1);
    let name = host.to_string();
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let _ = answer.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
        })
        .map_err(|e| Failure::new(FailureReason::Dns, format!("cannot start a lookup: {e}")))?;
    match answers.recv_timeout(deadline.left("resolving the name")?) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(Failure::new(FailureReason::Dns, format!("{host} has no address"))),
        Ok(Err(e)) => Err(Failure::new(FailureReason::Dns, format!("cannot resolve {host}: {e}"))),
        Err(_) => Err(Failure::new(
            FailureReason::Timeout,
            format!("timed out resolving {host} (the resolver did not answer)"),
        )),
    }
}

/// Connects to the first of `addrs` that accepts, by the deadline.
///
/// # Errors
/// [`FailureReason::Refused`] (with the last error) or
/// [`FailureReason::Timeout`].
pub fn connect_tcp(addrs: &[SocketAddr], deadline: Deadline) -> Result<TcpStream, Failure> {
    let mut last = Failure::new(FailureReason::Refused, "no address to connect to");
    for addr in addrs {
        let left = deadline.left(&format!("connecting to {addr}"))?;
        match TcpStream::connect_timeout(addr, left) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => {
                last = Failure::io(&e, &format!("connecting to {addr}"), FailureReason::Refused)
            }
        }
    }
    Err(last)
}

/// Connects to a Unix socket (local: no lookup, and it answers at once or
/// not at all).
///
/// # Errors
/// [`FailureReason::Refused`].
pub fn connect_unix(path: &std::path::Path) -> Result<UnixStream, Failure> {
    UnixStream::connect(path).map_err(|e| {
        Failure::new(FailureReason::Refused, format!("connecting to {}: {e}", path.display()))
    })
}

/// A socket whose every read and write ends by the deadline.
pub trait Timed {
    /// Sets the socket's read and write timeouts.
    ///
    /// # Errors
    /// The socket refused the option.
    fn set_timeouts(&self, left: Duration) -> io::Result<()>;
}

impl Timed for TcpStream {
    fn set_timeouts(&self, left: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(left))?;
        self.set_write_timeout(Some(left))
    }
}

impl Timed for UnixStream {
    fn set_timeouts(&self, left: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(left))?;
        self.set_write_timeout(Some(left))
    }
}

/// Either kind of plain socket.
#[derive(Debug)]
pub enum Socket {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix socket.
    Unix(UnixStream),
}

impl Socket {
    /// Connects to `address` by the deadline; the phases it went through
    /// and their durations are given to `phase` (`"dns"` only for a name).
    ///
    /// # Errors
    /// As [`resolve`] and [`connect_tcp`].
    pub fn connect(
        address: &Address,
        deadline: Deadline,
        mut phase: impl FnMut(&'static str, Duration),
    ) -> Result<Socket, Failure> {
        match address {
            Address::Tcp { host, port } => {
                let started = Instant::now();
                let addrs = resolve(host, *port, deadline)?;
                if host.parse::<IpAddr>().is_err() {
                    phase("dns", started.elapsed());
                }
                let started = Instant::now();
                let stream = connect_tcp(&addrs, deadline)?;
                phase("connect", started.elapsed());
                Ok(Socket::Tcp(stream))
            }
            Address::Unix(path) => {
                let started = Instant::now();
                let stream = connect_unix(path)?;
                phase("connect", started.elapsed());
                Ok(Socket::Unix(stream))
            }
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Unix(s) => s.flush(),
        }
    }
}

impl Timed for Socket {
    fn set_timeouts(&self, left: Duration) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_timeouts(left),
            Socket::Unix(s) => s.set_timeouts(left),
        }
    }
}

/// A stream (plain or TLS) that applies the deadline to every operation
/// and turns errors into [`Failure`]s.
pub struct Conn<S> {
    stream: S,
    deadline: Deadline,
    socket: fn(&S) -> &dyn Timed,
}

impl<S: Read + Write> Conn<S> {
    /// Wraps `stream`, whose socket `socket` reaches.
    pub fn new(stream: S, deadline: Deadline, socket: fn(&S) -> &dyn Timed) -> Self {
        Conn { stream, deadline, socket }
    }

    fn arm(&self, step: &str) -> Result<(), Failure> {
        let left = self.deadline.left(step)?;
        (self.socket)(&self.stream)
            .set_timeouts(left)
            .map_err(|e| Failure::new(FailureReason::Protocol, format!("{step}: {e}")))
    }

    /// Writes all of `bytes`.
    ///
    /// # Errors
    /// Timeout, or [`FailureReason::Protocol`] (the peer went away).
    pub fn send(&mut self, bytes: &[u8], step: &str) -> Result<(), Failure> {
        self.arm(step)?;
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .map_err(|e| Failure::io(&e, step, FailureReason::Protocol))
    }

    /// Reads what is there (at least one byte; 0 at the end of the stream).
    ///
    /// # Errors
    /// Timeout, or [`FailureReason::Protocol`].
    pub fn receive(&mut self, buf: &mut [u8], step: &str) -> Result<usize, Failure> {
        loop {
            self.arm(step)?;
            match self.stream.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::io(&e, step, FailureReason::Protocol)),
            }
        }
    }

    /// Reads exactly `buf.len()` bytes.
    ///
    /// # Errors
    /// Timeout, or [`FailureReason::Protocol`] (also for an early end).
    pub fn receive_exact(&mut self, buf: &mut [u8], step: &str) -> Result<(), Failure> {
        let mut at = 0;
        while at < buf.len() {
            let n = self.receive(&mut buf[at..], step)?;
            if n == 0 {
                return Err(Failure::new(
                    FailureReason::Protocol,
                    format!("{step}: the server closed the connection"),
                ));
            }
            at += n;
        }
        Ok(())
    }

    /// The stream, for what the caller does beyond reads and writes.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream, given back (to run TLS over it).
    pub fn into_inner(self) -> S {
        self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Address::parse("127.0.0.1:6379", None),
            Ok(Address::Tcp { host: "127.0.0.1".into(), port: 6379 })
        );
        assert_eq!(
            Address::parse("db.internal", Some(5432)),
            Ok(Address::Tcp { host: "db.internal".into(), port: 5432 })
        );
        assert_eq!(
            Address::parse("[::1]:5672", None),
            Ok(Address::Tcp { host: "::1".into(), port: 5672 })
        );
        assert_eq!(
            Address::parse("::1", Some(80)),
            Ok(Address::Tcp { host: "::1".into(), port: 80 })
        );
        assert_eq!(
            Address::parse("/run/redis.sock", None),
            Ok(Address::Unix("/run/redis.sock".into()))
        );
        assert!(Address::parse("host", None).is_err());
        assert!(Address::parse("host:x", None).is_err());
        assert!(Address::parse(":80", None).is_err());
        assert_eq!(Address::parse("[::1]:5672", None).unwrap().to_string(), "[::1]:5672");
    }

    #[test]
    fn a_refused_port_and_a_silent_one() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let deadline = Deadline::after(Duration::from_secs(2));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert_eq!(connect_tcp(&[addr], deadline).unwrap_err().reason, FailureReason::Refused);

        // Accepts (the kernel's backlog) but never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(silent.local_addr().unwrap()).unwrap();
        let started = Instant::now();
        let mut conn =
            Conn::new(stream, Deadline::after(Duration::from_millis(300)), |s| s as &dyn Timed);
        let failure = conn.receive(&mut [0u8; 8], "waiting for the greeting").unwrap_err();
        assert_eq!(failure.reason, FailureReason::Timeout);
        assert!(failure.detail.contains("waiting for the greeting"), "{failure}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_name_that_does_not_resolve() {
        let failure = resolve("no-such-host.invalid", 80, Deadline::after(Duration::from_secs(20)))
            .unwrap_err();
        assert!(
            matches!(failure.reason, FailureReason::Dns | FailureReason::Timeout),
            "{failure:?}"
        );
    }
}
