//! One connection to a libzmq ROUTER, as a DEALER with CURVE: a TCP
//! connection, the greeting, the CurveZMQ handshake, then messages.
//!
//! The connect and the handshake block until a deadline, but return at once
//! when an `interrupt` descriptor (the agent's signal pipe) turns readable.
//! Afterwards the socket is non-blocking and the caller polls [`Client::fd`]:
//! [`Client::receive`] when it is readable, [`Client::flush`] when it is
//! writable and [`Client::wants_write`] says so. Sends queue in user space
//! up to a byte limit (the kernel's send buffer comes first); past it a send
//! is refused, as a libzmq socket at its high-water mark refuses one.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    time::{Duration, Instant},
};

use rustix::{
    event::{PollFd, PollFlags, Timespec},
    net::{AddressFamily, SocketFlags, SocketType},
};

use crate::{
    ZmtpError,
    curve::{self, Handshake, Keys, Session},
    frame, greeting,
};

/// How a connection is made and bounded.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// For the TCP connect and the handshake together.
    pub timeout: Duration,
    /// Readable means: give up now ([`ZmtpError::Interrupted`]).
    pub interrupt: Option<BorrowedFd<'a>>,
    /// The largest message accepted from the server.
    pub max_message: usize,
    /// Bytes that may wait in user space for the socket to drain.
    pub send_queue: usize,
}

/// An established CURVE connection.
pub struct Client {
    stream: TcpStream,
    session: Session,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    max_body: usize,
    send_queue: usize,
    peer: SocketAddr,
}

/// `tcp://host:port` (or `tcp://[v6]:port`) as a host and a port.
///
/// # Errors
/// [`ZmtpError::Endpoint`].
pub fn parse_endpoint(endpoint: &str) -> Result<(String, u16), ZmtpError> {
    let bad = || ZmtpError::Endpoint(endpoint.to_string());
    let rest = endpoint.strip_prefix("tcp://").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Waits until `fd` is ready for `flags`, the deadline passes, or the
/// interrupt descriptor turns readable.
pub(crate) fn wait(
    fd: BorrowedFd<'_>,
    flags: PollFlags,
    deadline: Instant,
    interrupt: Option<BorrowedFd<'_>>,
    what: &'static str,
) -> Result<(), ZmtpError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ZmtpError::Timeout(what));
        }
        let mut fds = vec![PollFd::from_borrowed_fd(fd, flags)];
        if let Some(interrupt) = interrupt {
            fds.push(PollFd::from_borrowed_fd(interrupt, PollFlags::IN));
        }
        let timeout = Timespec::try_from(left).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(ZmtpError::Io(e.into())),
        }
        if fds.get(1).is_some_and(|i| !i.revents().is_empty()) {
            return Err(ZmtpError::Interrupted);
        }
        if !fds[0].revents().is_empty() {
            return Ok(());
        }
    }
}

/// A non-blocking TCP connect, bounded by the deadline and the interrupt.
fn connect_one(
    addr: SocketAddr,
    deadline: Instant,
    interrupt: Option<BorrowedFd<'_>>,
) -> Result<TcpStream, ZmtpError> {
    let failed = |source: io::Error| ZmtpError::Connect { addr, error: source };
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let fd: OwnedFd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| failed(e.into()))?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) => {}
        Err(rustix::io::Errno::INPROGRESS) => {
            wait(fd.as_fd(), PollFlags::OUT, deadline, interrupt, "connecting")?;
            rustix::net::sockopt::socket_error(&fd)
                .map_err(|e| failed(e.into()))?
                .map_err(|e| failed(e.into()))?;
        }
        Err(e) => return Err(failed(e.into())),
    }
    let stream = TcpStream::from(fd);
    stream.set_nodelay(true).map_err(failed)?;
    Ok(stream)
}

/// The handshake's blocking I/O over the non-blocking socket.
struct Wire<'a> {
    stream: &'a mut TcpStream,
    inbuf: Vec<u8>,
    deadline: Instant,
    interrupt: Option<BorrowedFd<'a>>,
}

impl Wire<'_> {
    fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), ZmtpError> {
        while !bytes.is_empty() {
            match self.stream.write(bytes) {
                Ok(0) => return Err(ZmtpError::Closed("during the handshake")),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let fd = self.stream.as_fd();
                    wait(fd, PollFlags::OUT, self.deadline, self.interrupt, "in the handshake")?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(closed_or(e)),
            }
        }
        Ok(())
    }

    fn fill(&mut self) -> Result<(), ZmtpError> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ZmtpError::Closed("during the handshake")),
                Ok(n) => {
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let fd = self.stream.as_fd();
                    wait(fd, PollFlags::IN, self.deadline, self.interrupt, "in the handshake")?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(closed_or(e)),
            }
        }
    }

    fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, ZmtpError> {
        while self.inbuf.len() < n {
            self.fill()?;
        }
        Ok(self.inbuf.drain(..n).collect())
    }

    /// The next handshake command: its name and data. An ERROR command is
    /// the server refusing us, with its reason.
    fn command(&mut self) -> Result<(String, Vec<u8>), ZmtpError> {
        loop {
            if let Some(frame) = frame::decode(&mut self.inbuf, 4096)? {
                if !frame.command {
                    return Err(ZmtpError::Protocol("a message frame during the handshake".into()));
                }
                let (name, data) = frame::command(&frame.body)
                    .ok_or_else(|| ZmtpError::Protocol("an empty command".into()))?;
                let name = String::from_utf8_lossy(name).into_owned();
                if name == "ERROR" {
                    let reason = frame::command(data)
                        .map(|(r, _)| String::from_utf8_lossy(r).into_owned())
                        .unwrap_or_default();
                    return Err(ZmtpError::Refused(reason));
                }
                return Ok((name, frame.body));
            }
            self.fill()?;
        }
    }
}

/// A reset connection mid-handshake reads as the server hanging up.
fn closed_or(error: io::Error) -> ZmtpError {
    match error.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
            ZmtpError::Closed("during the handshake")
        }
        _ => ZmtpError::Io(error),
    }
}

impl Client {
    /// Connects to `endpoint` (`tcp://host:port`) and completes the CURVE
    /// handshake as a DEALER.
    ///
    /// # Errors
    /// Every way it can fail, each its own [`ZmtpError`] variant, so that
    /// the caller can say which key or address is wrong.
    pub fn connect(endpoint: &str, keys: Keys, options: &Options<'_>) -> Result<Client, ZmtpError> {
        let deadline = Instant::now() + options.timeout;
        let (host, port) = parse_endpoint(endpoint)?;
        let addrs = crate::resolve::resolve(&host, port, deadline, options.interrupt)?;
        let mut last = ZmtpError::Resolve {
            host: host.clone(),
            error: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        };
        let mut stream = None;
        for addr in addrs {
            match connect_one(addr, deadline, options.interrupt) {
                Ok(s) => {
                    stream = Some((s, addr));
                    break;
                }
                Err(e @ (ZmtpError::Interrupted | ZmtpError::Timeout(_))) => return Err(e),
                Err(e) => last = e,
            }
        }
        let (mut stream, peer) = stream.ok_or(last)?;
        let mut wire =
            Wire { stream: &mut stream, inbuf: Vec::new(), deadline, interrupt: options.interrupt };

        wire.write_all(&greeting::client())?;
        // libzmq hangs up without finishing its greeting when ours offers
        // a mechanism it does not use.
        let theirs = wire.read_exact(greeting::LEN).map_err(|e| match e {
            ZmtpError::Closed(_) => ZmtpError::Closed("during the greeting (it may not use CURVE)"),
            other => other,
        })?;
        greeting::check(&theirs)?;

        let mut handshake = Handshake::new(keys)?;
        let mut out = Vec::new();
        frame::encode(true, &handshake.hello(), &mut out);
        wire.write_all(&out)?;
        let (name, welcome) = wire.command()?;
        if name != "WELCOME" {
            return Err(ZmtpError::Protocol(format!("expected WELCOME, got {name}")));
        }
        let metadata = frame::properties(&[("Socket-Type", b"DEALER"), ("Identity", b"")]);
        let initiate = handshake.initiate(&welcome, &metadata)?;
        out.clear();
        frame::encode(true, &initiate, &mut out);
        wire.write_all(&out)?;
        let (name, ready) = wire.command()?;
        if name != "READY" {
            return Err(ZmtpError::Protocol(format!("expected READY, got {name}")));
        }
        let (session, metadata) = handshake.ready(&ready)?;
        let properties = frame::parse_properties(&metadata)
            .ok_or_else(|| ZmtpError::Protocol("malformed READY metadata".into()))?;
        let socket_type = properties
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Socket-Type"))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        if !matches!(socket_type.as_str(), "ROUTER" | "DEALER" | "REP") {
            return Err(ZmtpError::Protocol(format!(
                "the server is a {socket_type:?} socket, which a DEALER cannot talk to"
            )));
        }
        let inbuf = std::mem::take(&mut wire.inbuf);
        Ok(Client {
            stream,
            session,
            inbuf,
            outbuf: Vec::new(),
            max_body: options.max_message + 16 + 16 + 1,
            send_queue: options.send_queue,
            peer,
        })
    }

    /// The address this client connected to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The socket, for the caller's poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// Whether queued bytes wait for the socket to be writable.
    pub fn wants_write(&self) -> bool {
        !self.outbuf.is_empty()
    }

    /// Queues one single-part message and writes what the socket takes.
    /// `Ok(false)`: the queue is full and the message was not sent.
    ///
    /// # Errors
    /// The connection failed.
    pub fn send(&mut self, data: &[u8]) -> Result<bool, ZmtpError> {
        if self.outbuf.len() > self.send_queue {
            return Ok(false);
        }
        let body = self.session.seal(0, data);
        frame::encode(false, &body, &mut self.outbuf);
        self.flush()?;
        Ok(true)
    }

    /// Writes queued bytes until the socket would block.
    ///
    /// # Errors
    /// The connection failed.
    pub fn flush(&mut self) -> Result<(), ZmtpError> {
        while !self.outbuf.is_empty() {
            match self.stream.write(&self.outbuf) {
                Ok(0) => return Err(ZmtpError::Closed("")),
                Ok(n) => {
                    self.outbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ZmtpError::Io(e)),
            }
        }
        Ok(())
    }

    /// Writes what is queued, waiting at most until `deadline` (shutdown:
    /// the last message should reach the server).
    pub fn linger(&mut self, deadline: Instant) {
        while self.wants_write() {
            if self.flush().is_err() {
                return;
            }
            if self.wants_write()
                && wait(self.stream.as_fd(), PollFlags::OUT, deadline, None, "lingering").is_err()
            {
                return;
            }
        }
    }

    /// The next message from the server, without blocking: `Ok(None)` when
    /// none has fully arrived. ZMTP commands inside the encryption (PING)
    /// are answered here and never returned.
    ///
    /// # Errors
    /// The connection closed or failed, or the server broke the protocol
    /// (the caller should reconnect).
    pub fn receive(&mut self) -> Result<Option<Vec<u8>>, ZmtpError> {
        loop {
            if let Some(frame) = frame::decode(&mut self.inbuf, self.max_body)? {
                if frame.command {
                    return Err(ZmtpError::Protocol(
                        "an unencrypted command after the handshake".into(),
                    ));
                }
                let (flags, data) = self.session.open(&frame.body)?;
                if flags & curve::FLAG_COMMAND != 0 {
                    self.on_command(&data)?;
                    continue;
                }
                return Ok(Some(data));
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ZmtpError::Closed("")),
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ZmtpError::Io(e)),
            }
        }
    }

    /// ZMTP 3.1 heartbeats: a PING is answered with a PONG carrying its
    /// context; other commands are ignored.
    fn on_command(&mut self, data: &[u8]) -> Result<(), ZmtpError> {
        if let Some((b"PING", rest)) = frame::command(data) {
            let context = rest.get(2..).unwrap_or_default();
            let mut pong = b"\x04PONG".to_vec();
            pong.extend_from_slice(&context[..context.len().min(16)]);
            let body = self.session.seal(curve::FLAG_COMMAND, &pong);
            frame::encode(false, &body, &mut self.outbuf);
            self.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_name_a_host_and_a_port() {
        let parse = |e: &str| parse_endpoint(e).ok();
        assert_eq!(parse("tcp://collector.example:5556"), Some(("collector.example".into(), 5556)));
        assert_eq!(parse("tcp://[::1]:7000"), Some(("::1".into(), 7000)));
        assert_eq!(parse("tcp://10.0.0.1:1"), Some(("10.0.0.1".into(), 1)));
        for bad in ["collector:5556", "tcp://:5556", "tcp://host", "tcp://host:port", "ipc://x:1"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
