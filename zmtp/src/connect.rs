//! Making a connection without blocking: name resolution, the TCP
//! connect, the ZMTP greeting and the CURVE handshake, as a state machine
//! the caller's event loop drives.
//!
//! [`Connector::advance`] does what can be done now and returns; the caller
//! polls [`Connector::fd`] for [`Connector::interest`] and calls it again,
//! and gives up at [`Connector::deadline`]. So an agent keeps reading its
//! StatsD sockets and sampling while a collector is slow to answer, and a
//! signal needs nothing special to be noticed. [`crate::Client::connect`]
//! is the same machine driven by a blocking loop.

use std::{
    collections::VecDeque,
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    time::Instant,
};

use rustix::{
    event::{PollFd, PollFlags, Timespec},
    net::{AddressFamily, SocketFlags, SocketType},
};

use crate::{
    Client, Options, ZmtpError,
    curve::{Handshake, Keys},
    frame, greeting,
    resolve::{Resolution, Resolved},
};

/// What [`Connector::advance`] achieved.
pub enum Progress {
    /// Not yet: poll [`Connector::fd`] for [`Connector::interest`].
    Pending,
    /// The handshake is complete.
    Done(Client),
}

/// Where the handshake stands after taking in what arrived.
enum After {
    /// READY came: the session is established.
    Done(crate::curve::Session),
    /// Waiting in this phase (any reply is queued in the output).
    Wait(Box<Phase>),
}

enum Phase {
    /// Our greeting is queued; theirs is awaited.
    Greeting,
    /// HELLO sent; WELCOME awaited.
    Welcome(Handshake),
    /// INITIATE sent; READY awaited.
    Ready(Handshake),
}

enum Step {
    Resolving(Resolution),
    Connecting {
        socket: OwnedFd,
        addr: SocketAddr,
        rest: VecDeque<SocketAddr>,
    },
    Handshaking {
        stream: TcpStream,
        peer: SocketAddr,
        out: Vec<u8>,
        inbuf: Vec<u8>,
        phase: Box<Phase>,
    },
    /// Only while moving from one step to the next.
    Moving,
}

/// A connection being made.
pub struct Connector {
    keys: Option<Keys>,
    max_message: usize,
    send_queue: usize,
    deadline: Instant,
    step: Step,
    /// The last connect failure, reported if no address works.
    last: Option<ZmtpError>,
}

/// A non-blocking TCP socket connecting to `addr`.
fn start_connect(addr: SocketAddr) -> Result<OwnedFd, ZmtpError> {
    let failed = |source: io::Error| ZmtpError::Connect { addr, error: source };
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| failed(e.into()))?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => Ok(fd),
        Err(e) => Err(failed(e.into())),
    }
}

/// Whether `fd` is ready for `flags` right now.
fn ready(fd: BorrowedFd<'_>, flags: PollFlags) -> bool {
    let mut fds = [PollFd::from_borrowed_fd(fd, flags)];
    let now = Timespec { tv_sec: 0, tv_nsec: 0 };
    matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(n) if n > 0)
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

/// The next handshake command in `inbuf`, if whole: its name and the
/// command's body. An ERROR command is the server refusing us.
fn command(inbuf: &mut Vec<u8>) -> Result<Option<(String, Vec<u8>)>, ZmtpError> {
    let Some(frame) = frame::decode(inbuf, 4096)? else { return Ok(None) };
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
    Ok(Some((name, frame.body)))
}

impl Connector {
    /// Starts connecting to `endpoint` (`tcp://host:port`) as a DEALER with
    /// CURVE; a name is resolved on a short-lived thread. `options.timeout`
    /// bounds the whole; `options.interrupt` is not used here (the caller
    /// polls for itself).
    ///
    /// # Errors
    /// A bad endpoint, or no way to start (no thread, no socket).
    pub fn start(endpoint: &str, keys: Keys, options: &Options<'_>) -> Result<Self, ZmtpError> {
        let deadline = Instant::now() + options.timeout;
        let (host, port) = crate::parse_endpoint(endpoint)?;
        let mut connector = Connector {
            keys: Some(keys),
            max_message: options.max_message,
            send_queue: options.send_queue,
            deadline,
            step: Step::Moving,
            last: None,
        };
        match Resolution::start(&host, port)? {
            Resolved::Now(addrs) => connector.connect_next(addrs.into())?,
            Resolved::Later(resolution) => connector.step = Step::Resolving(resolution),
        }
        Ok(connector)
    }

    /// When the caller should give up ([`ZmtpError::Timeout`]).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// What is being waited for, for a timeout's message.
    pub fn waiting_for(&self) -> &'static str {
        match &self.step {
            Step::Resolving(_) => "resolving the collector's name",
            Step::Connecting { .. } => "connecting",
            Step::Handshaking { phase, .. } if matches!(**phase, Phase::Greeting) => {
                "waiting for the ZMTP greeting"
            }
            _ => "in the CURVE handshake",
        }
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        match &self.step {
            Step::Resolving(r) => r.fd(),
            Step::Connecting { socket, .. } => socket.as_fd(),
            Step::Handshaking { stream, .. } => stream.as_fd(),
            // Never observed: `advance` always leaves a real step.
            Step::Moving => unreachable!("a connector between steps"),
        }
    }

    /// The events to poll [`Connector::fd`] for.
    pub fn interest(&self) -> PollFlags {
        match &self.step {
            Step::Connecting { .. } => PollFlags::OUT,
            Step::Handshaking { out, .. } if !out.is_empty() => PollFlags::IN | PollFlags::OUT,
            _ => PollFlags::IN,
        }
    }

    /// Tries the next address, or fails with the last error.
    fn connect_next(&mut self, mut rest: VecDeque<SocketAddr>) -> Result<(), ZmtpError> {
        while let Some(addr) = rest.pop_front() {
            match start_connect(addr) {
                Ok(socket) => {
                    self.step = Step::Connecting { socket, addr, rest };
                    return Ok(());
                }
                Err(e) => self.last = Some(e),
            }
        }
        Err(self.last.take().unwrap_or_else(|| ZmtpError::Resolve {
            host: "the collector".into(),
            error: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        }))
    }

    /// Does what can be done without blocking.
    ///
    /// # Errors
    /// Every way a connection can fail, as [`crate::Client::connect`] says.
    pub fn advance(&mut self) -> Result<Progress, ZmtpError> {
        loop {
            match std::mem::replace(&mut self.step, Step::Moving) {
                Step::Resolving(mut resolution) => match resolution.poll()? {
                    None => {
                        self.step = Step::Resolving(resolution);
                        return Ok(Progress::Pending);
                    }
                    Some(addrs) => self.connect_next(addrs.into())?,
                },
                Step::Connecting { socket, addr, rest } => {
                    if !ready(socket.as_fd(), PollFlags::OUT) {
                        self.step = Step::Connecting { socket, addr, rest };
                        return Ok(Progress::Pending);
                    }
                    let failed = |e: io::Error| ZmtpError::Connect { addr, error: e };
                    let outcome = rustix::net::sockopt::socket_error(&socket)
                        .map_err(|e| failed(e.into()))
                        .and_then(|r| r.map_err(|e| failed(e.into())));
                    match outcome {
                        Ok(()) => {
                            let stream = TcpStream::from(socket);
                            stream.set_nodelay(true).map_err(failed)?;
                            self.step = Step::Handshaking {
                                stream,
                                peer: addr,
                                out: greeting::client().to_vec(),
                                inbuf: Vec::new(),
                                phase: Box::new(Phase::Greeting),
                            };
                        }
                        Err(e) => {
                            self.last = Some(e);
                            self.connect_next(rest)?;
                        }
                    }
                }
                Step::Handshaking { mut stream, peer, mut out, mut inbuf, phase } => {
                    flush(&mut stream, &mut out)?;
                    let closed = fill(&mut stream, &mut inbuf)?;
                    match self.handshake(phase, &mut out, &mut inbuf)? {
                        After::Done(session) => {
                            flush(&mut stream, &mut out)?;
                            return Ok(Progress::Done(Client::established(
                                stream,
                                session,
                                inbuf,
                                peer,
                                self.max_message,
                                self.send_queue,
                            )));
                        }
                        After::Wait(phase) => {
                            // Send a reply at once; the answer wakes the caller.
                            flush(&mut stream, &mut out)?;
                            if closed {
                                return Err(match *phase {
                                    Phase::Greeting => ZmtpError::Closed(
                                        "during the greeting (it may not use CURVE)",
                                    ),
                                    _ => ZmtpError::Closed("during the handshake"),
                                });
                            }
                            self.step = Step::Handshaking { stream, peer, out, inbuf, phase };
                            return Ok(Progress::Pending);
                        }
                    }
                }
                Step::Moving => unreachable!("a connector between steps"),
            }
        }
    }

    /// Moves the handshake on with what has arrived.
    fn handshake(
        &mut self,
        phase: Box<Phase>,
        out: &mut Vec<u8>,
        inbuf: &mut Vec<u8>,
    ) -> Result<After, ZmtpError> {
        let mut phase = *phase;
        loop {
            phase = match phase {
                Phase::Greeting => {
                    if inbuf.len() < greeting::LEN {
                        return Ok(After::Wait(Box::new(Phase::Greeting)));
                    }
                    greeting::check(&inbuf[..greeting::LEN])?;
                    inbuf.drain(..greeting::LEN);
                    let keys = self
                        .keys
                        .take()
                        .ok_or_else(|| ZmtpError::Protocol("a second greeting".into()))?;
                    let mut handshake = Handshake::new(keys)?;
                    frame::encode(true, &handshake.hello(), out);
                    Phase::Welcome(handshake)
                }
                Phase::Welcome(mut handshake) => {
                    let Some((name, welcome)) = command(inbuf)? else {
                        return Ok(After::Wait(Box::new(Phase::Welcome(handshake))));
                    };
                    if name != "WELCOME" {
                        return Err(ZmtpError::Protocol(format!("expected WELCOME, got {name}")));
                    }
                    let metadata =
                        frame::properties(&[("Socket-Type", b"DEALER"), ("Identity", b"")]);
                    let initiate = handshake.initiate(&welcome, &metadata)?;
                    frame::encode(true, &initiate, out);
                    Phase::Ready(handshake)
                }
                Phase::Ready(handshake) => {
                    let Some((name, ready)) = command(inbuf)? else {
                        return Ok(After::Wait(Box::new(Phase::Ready(handshake))));
                    };
                    if name != "READY" {
                        return Err(ZmtpError::Protocol(format!("expected READY, got {name}")));
                    }
                    let (session, metadata) = handshake.ready(&ready)?;
                    check_peer_type(&metadata)?;
                    return Ok(After::Done(session));
                }
            };
        }
    }
}

/// The server must be a socket a DEALER can talk to.
fn check_peer_type(metadata: &[u8]) -> Result<(), ZmtpError> {
    let properties = frame::parse_properties(metadata)
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
    Ok(())
}

/// Writes what the socket takes now.
fn flush(stream: &mut TcpStream, out: &mut Vec<u8>) -> Result<(), ZmtpError> {
    while !out.is_empty() {
        match stream.write(out) {
            Ok(0) => return Err(ZmtpError::Closed("during the handshake")),
            Ok(n) => {
                out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(closed_or(e)),
        }
    }
    Ok(())
}

/// Reads what has arrived; true when the server closed the connection.
fn fill(stream: &mut TcpStream, inbuf: &mut Vec<u8>) -> Result<bool, ZmtpError> {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(true),
            Ok(n) => inbuf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(closed_or(e)),
        }
    }
}
