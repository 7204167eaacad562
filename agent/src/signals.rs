//! SIGTERM and SIGINT (stop) and SIGHUP (return to the first collector) as
//! a file descriptor the event loop polls beside its sockets, so a signal
//! wakes the loop at once without a busy timeout.

use std::{
    io::{self, Read},
    os::{
        fd::{AsFd, BorrowedFd},
        unix::net::UnixStream,
    },
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Installed handlers for SIGTERM and SIGINT.
pub struct Signals {
    wake: UnixStream,
    term: Arc<AtomicBool>,
    int: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers. After this, SIGTERM and SIGINT no longer kill
    /// the process: the loop must check [`Signals::received`].
    ///
    /// # Errors
    /// If the socket pair or a handler cannot be set up.
    pub fn install() -> io::Result<Self> {
        let (wake, writer) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        let term = Arc::new(AtomicBool::new(false));
        let int = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(SIGTERM, Arc::clone(&term))?;
        signal_hook::flag::register(SIGINT, Arc::clone(&int))?;
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(SIGHUP, Arc::clone(&hup))?;
        let writer2 = writer.try_clone()?;
        let writer3 = writer.try_clone()?;
        signal_hook::low_level::pipe::register(SIGTERM, writer)?;
        signal_hook::low_level::pipe::register(SIGINT, writer2)?;
        signal_hook::low_level::pipe::register(SIGHUP, writer3)?;
        Ok(Signals { wake, term, int, hup })
    }

    /// The descriptor that becomes readable when a signal arrives.
    pub fn borrow_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Whether SIGHUP arrived since the last call.
    pub fn take_hup(&self) -> bool {
        self.hup.swap(false, Ordering::SeqCst)
    }

    /// The signal received, if any (draining the wake-up bytes).
    pub fn received(&self) -> Option<&'static str> {
        let mut buf = [0u8; 16];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        if self.term.load(Ordering::SeqCst) {
            Some("received SIGTERM")
        } else if self.int.load(Ordering::SeqCst) {
            Some("received SIGINT")
        } else {
            None
        }
    }
}
