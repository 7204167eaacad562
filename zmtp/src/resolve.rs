//! Name resolution that never blocks the caller.
//!
//! `getaddrinfo` blocks for as long as the resolver is configured to wait
//! (with an unreachable DNS server, tens of seconds) and cannot be woken.
//! So a name is resolved on a short-lived thread that writes one byte to a
//! socket pair when it has the answer; the caller polls that socket beside
//! everything else and can give up at any time. An abandoned lookup
//! finishes on its own and its thread ends. Addresses written as numbers
//! need no thread at all.

use std::{
    io::{self, Read, Write},
    net::{IpAddr, SocketAddr, ToSocketAddrs},
    os::{fd::AsFd, fd::BorrowedFd, unix::net::UnixStream},
    sync::mpsc,
};

use crate::ZmtpError;

/// A lookup under way.
pub(crate) struct Resolution {
    host: String,
    wake: UnixStream,
    answers: mpsc::Receiver<io::Result<Vec<SocketAddr>>>,
}

/// The outcome of [`Resolution::start`].
pub(crate) enum Resolved {
    /// The host was an address.
    Now(Vec<SocketAddr>),
    /// A lookup is running.
    Later(Resolution),
}

impl Resolution {
    /// Starts resolving `host`.
    ///
    /// # Errors
    /// [`ZmtpError::Resolve`] when no thread or socket pair can be had.
    pub(crate) fn start(host: &str, port: u16) -> Result<Resolved, ZmtpError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Resolved::Now(vec![SocketAddr::new(ip, port)]));
        }
        let failed = |error| ZmtpError::Resolve { host: host.to_string(), error };
        let (wake, mut done) = UnixStream::pair().map_err(failed)?;
        wake.set_nonblocking(true).map_err(failed)?;
        let (answer, answers) = mpsc::sync_channel(1);
        let name = host.to_string();
        std::thread::Builder::new()
            .name("resolve".into())
            .spawn(move || {
                let result = (name.as_str(), port).to_socket_addrs().map(Iterator::collect);
                // The caller may have given up and gone: then both fail,
                // and the thread simply ends.
                let _ = answer.send(result);
                let _ = done.write_all(&[1]);
            })
            .map_err(failed)?;
        Ok(Resolved::Later(Resolution { host: host.to_string(), wake, answers }))
    }

    /// The descriptor that turns readable when the answer is there.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The addresses, once known.
    ///
    /// # Errors
    /// [`ZmtpError::Resolve`] when the name does not resolve.
    pub(crate) fn poll(&mut self) -> Result<Option<Vec<SocketAddr>>, ZmtpError> {
        let _ = self.wake.read(&mut [0u8; 1]);
        let failed = |error| ZmtpError::Resolve { host: self.host.clone(), error };
        match self.answers.try_recv() {
            Ok(Ok(addrs)) if addrs.is_empty() => {
                Err(failed(io::Error::new(io::ErrorKind::NotFound, "no addresses")))
            }
            Ok(Ok(addrs)) => Ok(Some(addrs)),
            Ok(Err(error)) => Err(failed(error)),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => {
                Err(failed(io::Error::other("the resolver thread ended without an answer")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn numbers_need_no_lookup_and_names_arrive_later() {
        assert!(matches!(
            Resolution::start("127.0.0.1", 5),
            Ok(Resolved::Now(a)) if a == vec!["127.0.0.1:5".parse().unwrap()]
        ));
        assert!(matches!(Resolution::start("::1", 5), Ok(Resolved::Now(_))));
        let Ok(Resolved::Later(mut lookup)) = Resolution::start("localhost", 7) else {
            panic!("a name is looked up on a thread")
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let addrs = loop {
            if let Some(addrs) = lookup.poll().unwrap() {
                break addrs;
            }
            assert!(Instant::now() < deadline, "no answer for localhost");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 7), "{addrs:?}");
    }
}
