//! One connection to a libzmq ROUTER, as a DEALER with CURVE: a TCP
//! connection, the greeting, the CurveZMQ handshake, then messages.
//!
//! The connection is made by a [`crate::Connector`], driven by the caller's
//! event loop or by [`Client::connect`], which blocks until a deadline but
//! returns at once when an `interrupt` descriptor (a signal pipe) turns
//! readable. Afterwards the socket is non-blocking and the caller polls [`Client::fd`]:
//! [`Client::receive`] when it is readable, [`Client::flush`] when it is
//! writable and [`Client::wants_write`] says so. Sends queue in user space
//! up to a byte limit (the kernel's send buffer comes first); past it a send
//! is refused, as a libzmq socket at its high-water mark refuses one.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::{AsFd, BorrowedFd},
    time::{Duration, Instant},
};

use rustix::event::{PollFd, PollFlags, Timespec};

use crate::{
    ZmtpError,
    connect::{Connector, Progress},
    curve::{self, Keys, Session},
    frame,
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

impl Client {
    /// Connects to `endpoint` (`tcp://host:port`) and completes the CURVE
    /// handshake as a DEALER, blocking until done, the timeout, or the
    /// interrupt descriptor turning readable. (An event loop drives a
    /// [`crate::Connector`] instead.)
    ///
    /// # Errors
    /// Every way it can fail, each its own [`ZmtpError`] variant, so that
    /// the caller can say which key or address is wrong.
    pub fn connect(endpoint: &str, keys: Keys, options: &Options<'_>) -> Result<Client, ZmtpError> {
        let mut connector = Connector::start(endpoint, keys, options)?;
        loop {
            if let Progress::Done(client) = connector.advance()? {
                return Ok(client);
            }
            wait(
                connector.fd(),
                connector.interest(),
                connector.deadline(),
                options.interrupt,
                connector.waiting_for(),
            )?;
        }
    }

    /// A client over an established session.
    pub(crate) fn established(
        stream: TcpStream,
        session: Session,
        inbuf: Vec<u8>,
        peer: SocketAddr,
        max_message: usize,
        send_queue: usize,
    ) -> Client {
        Client {
            stream,
            session,
            inbuf,
            outbuf: Vec::new(),
            max_body: max_message + 16 + 16 + 1,
            send_queue,
            peer,
        }
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
