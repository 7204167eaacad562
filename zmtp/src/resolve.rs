//! Name resolution that a signal or the connect deadline can interrupt.
//!
//! `getaddrinfo` blocks for as long as the resolver is configured to wait
//! (with an unreachable DNS server, tens of seconds) and cannot be woken.
//! So a name is resolved on a short-lived thread, and the caller waits for
//! its answer, the deadline or the interrupt descriptor, whichever comes
//! first. A lookup that is given up on finishes on its own and its thread
//! ends; addresses written as numbers need no thread at all.

use std::{
    io::{self, Read, Write},
    net::{IpAddr, SocketAddr, ToSocketAddrs},
    os::{fd::AsFd, fd::BorrowedFd, unix::net::UnixStream},
    sync::mpsc,
    time::Instant,
};

use rustix::event::PollFlags;

use crate::{ZmtpError, client::wait};

/// The addresses of `host`, in the resolver's order.
///
/// # Errors
/// [`ZmtpError::Resolve`] when the name does not resolve,
/// [`ZmtpError::Timeout`] at the deadline, [`ZmtpError::Interrupted`] when
/// `interrupt` turns readable.
pub fn resolve(
    host: &str,
    port: u16,
    deadline: Instant,
    interrupt: Option<BorrowedFd<'_>>,
) -> Result<Vec<SocketAddr>, ZmtpError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let failed = |source| ZmtpError::Resolve { host: host.to_string(), error: source };
    let (mut wake, mut done) = UnixStream::pair().map_err(failed)?;
    wake.set_nonblocking(true).map_err(failed)?;
    let (answer, answers) = mpsc::sync_channel(1);
    let name = host.to_string();
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let result = (name.as_str(), port).to_socket_addrs().map(Iterator::collect);
            // The caller may have given up and gone: then both fail, and
            // the thread simply ends.
            let _ = answer.send(result);
            let _ = done.write_all(&[1]);
        })
        .map_err(failed)?;
    wait(wake.as_fd(), PollFlags::IN, deadline, interrupt, "resolving the collector's name")?;
    let _ = wake.read(&mut [0u8; 1]);
    match answers.try_recv() {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(source)) => Err(failed(source)),
        Err(_) => Err(failed(io::Error::other("the resolver thread ended without an answer"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn numbers_and_names() {
        let soon = Instant::now() + Duration::from_secs(10);
        assert_eq!(
            resolve("127.0.0.1", 5, soon, None).unwrap(),
            vec!["127.0.0.1:5".parse().unwrap()]
        );
        assert_eq!(resolve("::1", 5, soon, None).unwrap(), vec!["[::1]:5".parse().unwrap()]);
        let local = resolve("localhost", 7, soon, None).unwrap();
        assert!(local.iter().all(|a| a.ip().is_loopback() && a.port() == 7), "{local:?}");
    }

    #[test]
    fn an_interrupt_ends_the_wait() {
        let (interrupt, mut poke) = UnixStream::pair().unwrap();
        poke.write_all(&[1]).unwrap();
        let soon = Instant::now() + Duration::from_secs(10);
        // Whether or not the lookup is quick, the interrupt is already there.
        match resolve("localhost", 7, soon, Some(interrupt.as_fd())) {
            Err(ZmtpError::Interrupted) | Ok(_) => {}
            other => panic!("{other:?}"),
        }
    }
}
