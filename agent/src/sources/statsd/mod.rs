//! StatsD in: a UDP socket (`127.0.0.1:8125`), a Unix datagram socket and a
//! Unix stream socket (for clients that must not lose a line: the kernel
//! holds the sender back instead of dropping), all read by the agent's
//! event loop without blocking.
//!
//! Unix sockets tell the sender's process: datagrams carry its credentials
//! (`SO_PASSCRED`), a stream connection its peer's (`SO_PEERCRED`), so the
//! agent can name the instance and measure its CPU and memory. UDP does
//! not; an `instance` tag names the instance there.
//!
//! Nothing a client sends stops the agent: a line that does not parse is
//! counted (`curvemon_statsd_dropped_total{reason="parse_error"}`) and the
//! first few a minute are logged with the sender; the kernel's own drops
//! (a full receive buffer) are read from `/proc/net/udp` and counted too.

pub mod line;

use std::{
    io::{IoSliceMut, Read},
    mem::MaybeUninit,
    net::{SocketAddr, UdpSocket},
    os::{
        fd::{AsFd, BorrowedFd},
        unix::{
            fs::{FileTypeExt, PermissionsExt},
            net::{UnixDatagram, UnixListener, UnixStream},
        },
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use tracing::{info, warn};

use crate::apps::{Apps, Drop, Origin};

/// Where StatsD is received, from the `[statsd]` section of the config.
#[derive(Debug, Clone)]
pub struct Config {
    /// UDP address (`None`: off).
    pub udp: Option<SocketAddr>,
    /// Unix datagram socket path (`None`: off).
    pub unix: Option<PathBuf>,
    /// Unix stream socket path (`None`: off).
    pub stream: Option<PathBuf>,
    /// Mode of the socket files: who may send.
    pub socket_mode: u32,
    /// Stream connections served at once.
    pub max_connections: usize,
}

/// The default UDP address: loopback only.
pub const DEFAULT_UDP: &str = "127.0.0.1:8125";
/// The default datagram socket (systemd's `RuntimeDirectory=curvemon`).
pub const DEFAULT_UNIX: &str = "/run/curvemon/statsd.sock";
/// The default stream socket.
pub const DEFAULT_STREAM: &str = "/run/curvemon/statsd-stream.sock";

impl Default for Config {
    fn default() -> Self {
        Config {
            udp: DEFAULT_UDP.parse().ok(),
            unix: Some(DEFAULT_UNIX.into()),
            stream: Some(DEFAULT_STREAM.into()),
            socket_mode: 0o666,
            max_connections: 64,
        }
    }
}

/// How often the kernel's drop count of the UDP socket is read.
const DROPS_EVERY: Duration = Duration::from_secs(10);

/// The largest datagram (and stream line) taken whole.
const MAX_LINE: usize = 64 * 1024;

/// Datagrams or reads handled per socket per loop turn, so one busy socket
/// cannot starve the rest of the loop.
const BATCH: usize = 256;

/// One stream connection and its partial line.
struct Connection {
    stream: UnixStream,
    pid: Option<u32>,
    buf: Vec<u8>,
    /// Skipping the rest of a line that was too long.
    skipping: bool,
}

/// Logs the first few bad lines a minute, then a count of the rest.
struct BadLines {
    window: Instant,
    logged: u32,
    held: u64,
}

impl BadLines {
    fn report(&mut self, sender: &dyn std::fmt::Display, line: &[u8], why: &str) {
        let now = Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(60) {
            if self.held > 0 {
                warn!(held = self.held, "More malformed StatsD lines in the last minute.");
            }
            self.window = now;
            self.logged = 0;
            self.held = 0;
        }
        if self.logged < 5 {
            self.logged += 1;
            let shown: String =
                String::from_utf8_lossy(&line[..line.len().min(120)]).escape_debug().collect();
            warn!(%sender, line = %shown, why, "Dropped a malformed StatsD line.");
        } else {
            self.held += 1;
        }
    }
}

/// The open StatsD sockets.
pub struct Statsd {
    udp: Option<UdpSocket>,
    unix: Option<(UnixDatagram, PathBuf)>,
    listener: Option<(UnixListener, PathBuf)>,
    connections: Vec<Connection>,
    max_connections: usize,
    udp_inode: Option<u64>,
    /// The kernel's drop count at the last look, to count only new drops.
    udp_drops: Option<u64>,
    /// When the drops were last read: `/proc/net/udp` lists every UDP
    /// socket of the host, so it is read every [`DROPS_EVERY`], not every
    /// sample.
    drops_read: Option<Instant>,
    files: crate::roots::FileCache,
    bad: BadLines,
    buf: Vec<u8>,
}

/// Binds a Unix socket at `path`, taking over a stale file but never one
/// that another process still serves.
fn unix_path(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        return Err(format!("{} does not exist", dir.display()));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            let alive = UnixStream::connect(path).is_ok()
                || UnixDatagram::unbound().and_then(|s| s.connect(path)).is_ok();
            if alive {
                return Err(format!("{} is in use by another process", path.display()));
            }
            std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))
        }
        Ok(_) => Err(format!("{} exists and is not a socket", path.display())),
        Err(_) => Ok(()),
    }
}

fn set_mode(path: &Path, mode: u32) {
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        warn!(path = %path.display(), error = %e, "Cannot set the StatsD socket's mode.");
    }
}

impl Statsd {
    /// Opens what `config` names. A socket that cannot be opened (the port
    /// is taken, the directory is missing) is logged and left out: the
    /// agent runs without it.
    pub fn open(config: &Config) -> Statsd {
        let mut statsd = Statsd {
            udp: None,
            unix: None,
            listener: None,
            connections: Vec::new(),
            max_connections: config.max_connections,
            udp_inode: None,
            udp_drops: None,
            drops_read: None,
            files: crate::roots::FileCache::default(),
            bad: BadLines { window: Instant::now(), logged: 0, held: 0 },
            buf: vec![0; MAX_LINE],
        };
        if let Some(addr) = config.udp {
            match UdpSocket::bind(addr).and_then(|s| s.set_nonblocking(true).map(|()| s)) {
                Ok(socket) => {
                    // A larger buffer rides out bursts; the kernel caps it
                    // at net.core.rmem_max and uses it only when needed.
                    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, 4 << 20);
                    statsd.udp_inode = rustix::fs::fstat(&socket).ok().map(|s| s.st_ino);
                    info!(%addr, "Receiving StatsD over UDP.");
                    statsd.udp = Some(socket);
                }
                Err(e) => warn!(%addr, error = %e, "Not receiving StatsD over UDP."),
            }
        }
        if let Some(path) = &config.unix {
            let bound = unix_path(path).and_then(|()| {
                let socket = UnixDatagram::bind(path).map_err(|e| e.to_string())?;
                socket.set_nonblocking(true).map_err(|e| e.to_string())?;
                rustix::net::sockopt::set_socket_passcred(&socket, true)
                    .map_err(|e| e.to_string())?;
                Ok(socket)
            });
            match bound {
                Ok(socket) => {
                    set_mode(path, config.socket_mode);
                    info!(path = %path.display(), "Receiving StatsD on a Unix datagram socket.");
                    statsd.unix = Some((socket, path.clone()));
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "Not receiving StatsD on a Unix datagram socket.")
                }
            }
        }
        if let Some(path) = &config.stream {
            let bound = unix_path(path).and_then(|()| {
                let listener = UnixListener::bind(path).map_err(|e| e.to_string())?;
                listener.set_nonblocking(true).map_err(|e| e.to_string())?;
                Ok(listener)
            });
            match bound {
                Ok(listener) => {
                    set_mode(path, config.socket_mode);
                    info!(path = %path.display(), "Receiving StatsD on a Unix stream socket.");
                    statsd.listener = Some((listener, path.clone()));
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "Not receiving StatsD on a Unix stream socket.")
                }
            }
        }
        statsd
    }

    /// Whether any socket is open.
    pub fn is_open(&self) -> bool {
        self.udp.is_some() || self.unix.is_some() || self.listener.is_some()
    }

    /// The descriptors to poll for reading, in a fixed order that
    /// [`Statsd::read`] takes back.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = Vec::with_capacity(3 + self.connections.len());
        fds.extend(self.udp.as_ref().map(|s| s.as_fd()));
        fds.extend(self.unix.as_ref().map(|(s, _)| s.as_fd()));
        fds.extend(self.listener.as_ref().map(|(l, _)| l.as_fd()));
        fds.extend(self.connections.iter().map(|c| c.stream.as_fd()));
        fds
    }

    /// Reads what is waiting on the sockets `ready` marks (in
    /// [`Statsd::fds`] order), at most a batch from each.
    pub fn read(&mut self, ready: &[bool], apps: &mut Apps, now: Instant) {
        let mut at = 0;
        let mut next = || {
            let r = ready.get(at).copied().unwrap_or(false);
            at += 1;
            r
        };
        if self.udp.is_some() && next() {
            self.read_udp(apps, now);
        }
        if self.unix.is_some() && next() {
            self.read_unix(apps, now);
        }
        if self.listener.is_some() && next() {
            self.accept();
        }
        let ready_connections: Vec<bool> = (0..self.connections.len()).map(|_| next()).collect();
        let mut closed = Vec::new();
        for (i, ready) in ready_connections.into_iter().enumerate() {
            if ready && !self.read_connection(i, apps, now) {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            self.connections.swap_remove(i);
        }
    }

    fn read_udp(&mut self, apps: &mut Apps, now: Instant) {
        let Some(socket) = &self.udp else { return };
        let origin = Origin { source: "statsd-udp".into(), pid: None };
        for _ in 0..BATCH {
            match socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let datagram = std::mem::take(&mut self.buf);
                    lines(&datagram[..n], &origin, &from, apps, &mut self.bad, now);
                    self.buf = datagram;
                }
                Err(_) => return,
            }
        }
    }

    fn read_unix(&mut self, apps: &mut Apps, now: Instant) {
        let Some((socket, path)) = &self.unix else { return };
        for _ in 0..BATCH {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut self.buf)];
            let received = rustix::net::recvmsg(socket, &mut iov, &mut control, RecvFlags::TRUNC);
            let Ok(message) = received else { return };
            let pid = control.drain().find_map(|m| match m {
                RecvAncillaryMessage::ScmCredentials(cred) => {
                    Some(cred.pid.as_raw_nonzero().get() as u32)
                }
                _ => None,
            });
            let sender = pid.map_or_else(|| path.display().to_string(), |p| format!("pid {p}"));
            if message.bytes > self.buf.len() {
                apps.counts.drop(Drop::TooLong, 1);
                self.bad.report(&sender, &self.buf[..64], "a datagram over 64 KiB");
                continue;
            }
            let origin = Origin { source: "statsd-unix".into(), pid };
            let datagram = std::mem::take(&mut self.buf);
            lines(&datagram[..message.bytes], &origin, &sender, apps, &mut self.bad, now);
            self.buf = datagram;
        }
    }

    fn accept(&mut self) {
        let Some((listener, _)) = &self.listener else { return };
        while let Ok((stream, _)) = listener.accept() {
            if self.connections.len() >= self.max_connections {
                warn!(
                    limit = self.max_connections,
                    "Refused a StatsD stream connection: too many open."
                );
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let pid = rustix::net::sockopt::socket_peercred(&stream)
                .ok()
                .map(|c| c.pid.as_raw_nonzero().get() as u32);
            self.connections.push(Connection { stream, pid, buf: Vec::new(), skipping: false });
        }
    }

    /// Reads a connection; false when it closed.
    fn read_connection(&mut self, i: usize, apps: &mut Apps, now: Instant) -> bool {
        let Some(conn) = self.connections.get_mut(i) else { return false };
        let origin = Origin { source: "statsd-stream".into(), pid: conn.pid };
        let sender = conn.pid.map_or_else(|| "a stream peer".to_string(), |p| format!("pid {p}"));
        for _ in 0..BATCH {
            let mut chunk = [0u8; 16 * 1024];
            match conn.stream.read(&mut chunk) {
                Ok(0) => {
                    // The last line may lack its newline.
                    if !conn.buf.is_empty() && !conn.skipping {
                        let rest = std::mem::take(&mut conn.buf);
                        lines(&rest, &origin, &sender, apps, &mut self.bad, now);
                    }
                    return false;
                }
                Ok(n) => {
                    conn.buf.extend_from_slice(&chunk[..n]);
                    // Whole lines now; keep the partial one.
                    if let Some(end) = conn.buf.iter().rposition(|b| *b == b'\n') {
                        let mut whole: Vec<u8> = conn.buf.drain(..=end).collect();
                        if conn.skipping {
                            // The end of a line that was too long.
                            let first = whole.iter().position(|b| *b == b'\n').unwrap_or(0);
                            whole.drain(..=first);
                            conn.skipping = false;
                        }
                        lines(&whole, &origin, &sender, apps, &mut self.bad, now);
                    }
                    if conn.buf.len() > MAX_LINE {
                        apps.counts.drop(Drop::TooLong, 1);
                        self.bad.report(&sender, &conn.buf[..64], "a line over 64 KiB");
                        conn.buf.clear();
                        conn.skipping = true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// New datagrams the kernel dropped on the UDP socket since the last
    /// call (its receive buffer was full), from the `drops` column of
    /// `/proc/net/udp` and `udp6`.
    pub fn kernel_drops(&mut self, proc_root: &Path) -> u64 {
        let Some(inode) = self.udp_inode else { return 0 };
        let now = Instant::now();
        if self.drops_read.is_some_and(|at| now.duration_since(at) < DROPS_EVERY) {
            return 0;
        }
        self.drops_read = Some(now);
        let files = &mut self.files;
        let total = ["net/udp", "net/udp6"]
            .iter()
            .find_map(|file| udp_drops(files.read(proc_root.join(file)).ok()?, inode));
        let Some(total) = total else { return 0 };
        let new = self.udp_drops.map_or(total, |last| total.saturating_sub(last));
        self.udp_drops = Some(total);
        new
    }

    /// Closes the sockets and removes their files.
    pub fn close(self) {
        for path in [self.unix.map(|(_, p)| p), self.listener.map(|(_, p)| p)].into_iter().flatten()
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The `drops` column of the `/proc/net/udp` line whose inode is `inode`.
fn udp_drops(text: &str, inode: u64) -> Option<u64> {
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retr uid timeout inode ref ptr drops
        (fields.get(9)?.parse::<u64>().ok()? == inode).then(|| fields.get(12)?.parse().ok())?
    })
}

/// Splits a datagram (or a run of stream bytes) into lines and takes each.
fn lines(
    bytes: &[u8],
    origin: &Origin,
    sender: &dyn std::fmt::Display,
    apps: &mut Apps,
    bad: &mut BadLines,
    now: Instant,
) {
    for raw in bytes.split(|b| *b == b'\n') {
        if raw.is_empty() || raw == b"\r" {
            continue;
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            apps.counts.drop(Drop::Parse, 1);
            bad.report(sender, raw, "not UTF-8");
            continue;
        };
        match line::parse(text) {
            Ok(metric) => apps.statsd(origin, &metric, now),
            Err(line::LineError::NotAMetric) => {}
            Err(error) => {
                apps.counts.drop(Drop::Parse, 1);
                bad.report(sender, raw, error.describe());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_drops_by_inode() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                    1234: 0100007F:1FBD 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 77 2 0000000000000000 42\n";
        assert_eq!(udp_drops(text, 77), Some(42));
        assert_eq!(udp_drops(text, 78), None);
    }
}
