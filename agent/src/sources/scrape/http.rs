//! Just enough HTTP/1.1 to GET a local `/metrics` page: one request per
//! connection (`Connection: close`), a body of `Content-Length`, chunked or
//! read to the end, bounded in bytes and in time. No TLS and no redirects:
//! targets are on this host (127.0.0.1 or a Unix socket) unless the
//! operator allows others, and an HTTP client library would cost the agent
//! more memory than the rest of this feature.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    os::unix::net::UnixStream,
    path::PathBuf,
    time::{Duration, Instant},
};

/// Where a page is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Url {
    /// `http://host:port/path`.
    Http {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// Path and query.
        path: String,
    },
    /// `unix:///run/app.sock` with an HTTP path.
    Unix {
        /// The socket.
        socket: PathBuf,
        /// Path and query.
        path: String,
    },
}

impl Url {
    /// Parses `http://host[:port][/path]` or `unix:///socket/path` (with
    /// `unix_path` as the HTTP path).
    ///
    /// # Errors
    /// A message saying what is expected.
    pub fn parse(text: &str, unix_path: &str) -> Result<Url, String> {
        if let Some(socket) = text.strip_prefix("unix://") {
            if !socket.starts_with('/') {
                return Err(format!("{text:?}: expected unix:///absolute/path.sock"));
            }
            return Ok(Url::Unix { socket: socket.into(), path: unix_path.to_string() });
        }
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| format!("{text:?}: expected http://host:port/path or unix:///path"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/metrics"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| format!("{text:?}: missing ]"))?;
            (host.to_string(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            None => 80,
            Some(p) => p.parse().map_err(|_| format!("{text:?}: bad port {p:?}"))?,
        };
        if host.is_empty() {
            return Err(format!("{text:?}: no host"));
        }
        Ok(Url::Http { host, port, path: path.to_string() })
    }

    /// Whether the page is on this host (loopback or a Unix socket).
    pub fn is_local(&self) -> bool {
        match self {
            Url::Unix { .. } => true,
            Url::Http { host, .. } => {
                host == "localhost"
                    || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Url::Http { host, port, path } if host.contains(':') => {
                write!(f, "http://[{host}]:{port}{path}")
            }
            Url::Http { host, port, path } => write!(f, "http://{host}:{port}{path}"),
            Url::Unix { socket, path } => write!(f, "unix://{}{path}", socket.display()),
        }
    }
}

/// Either kind of connection.
trait Conn: Read + Write {
    fn set_timeouts(&self, left: Duration) -> std::io::Result<()>;
}

impl Conn for TcpStream {
    fn set_timeouts(&self, left: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(left))?;
        self.set_write_timeout(Some(left))
    }
}

impl Conn for UnixStream {
    fn set_timeouts(&self, left: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(left))?;
        self.set_write_timeout(Some(left))
    }
}

fn left(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() { Err("timed out".into()) } else { Ok(left) }
}

/// GETs `url`: the body as text, within `timeout` and `max_bytes`.
///
/// # Errors
/// Why there is no page: connection, timeout, status, size, encoding.
pub fn get(url: &Url, timeout: Duration, max_bytes: usize) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let (mut conn, host, path): (Box<dyn Conn>, String, &str) = match url {
        Url::Http { host, port, path } => {
            let addrs: Vec<_> = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .collect();
            let addr = addrs.first().ok_or_else(|| format!("{host} has no address"))?;
            let stream = TcpStream::connect_timeout(addr, left(deadline)?)
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            (Box::new(stream), format!("{host}:{port}"), path)
        }
        Url::Unix { socket, path } => {
            let stream = UnixStream::connect(socket)
                .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
            (Box::new(stream), "localhost".to_string(), path)
        }
    };
    conn.set_timeouts(left(deadline)?).map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curvemon-agent/{}\r\n\
         Accept: text/plain;version=0.0.4\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    conn.write_all(request.as_bytes()).map_err(|e| format!("sending the request: {e}"))?;
    let limit = max_bytes + 64 * 1024;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        conn.set_timeouts(left(deadline)?).map_err(|e| e.to_string())?;
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                if raw.len() > limit {
                    return Err(format!("the page is larger than {max_bytes} bytes"));
                }
                if complete(&raw) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("timed out".into());
            }
            Err(e) => return Err(format!("reading the response: {e}")),
        }
    }
    let body = response_body(&raw)?;
    if body.len() > max_bytes {
        return Err(format!("the page is larger than {max_bytes} bytes"));
    }
    String::from_utf8(body).map_err(|_| "the page is not UTF-8".into())
}

/// A response's head: where the body starts, the headers (names in lower
/// case) and the status.
struct Head {
    body_start: usize,
    headers: Vec<(String, String)>,
    status: u16,
}

/// The head of a response, once whole.
fn head(raw: &[u8]) -> Option<Head> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Head { body_start: end + 4, headers, status })
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Whether a `Content-Length` response is complete (so a server that
/// keeps the connection open need not be waited for).
fn complete(raw: &[u8]) -> bool {
    let Some(Head { body_start: start, headers, .. }) = head(raw) else { return false };
    header(&headers, "content-length")
        .and_then(|l| l.parse::<usize>().ok())
        .is_some_and(|len| raw.len() >= start + len)
}

/// The body of a complete response.
fn response_body(raw: &[u8]) -> Result<Vec<u8>, String> {
    let Head { body_start: start, headers, status } = head(raw).ok_or("not an HTTP response")?;
    if status != 200 {
        return Err(format!("HTTP status {status}"));
    }
    if header(&headers, "content-encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
        return Err("a compressed page (the agent asks for none)".into());
    }
    let body = &raw[start..];
    if header(&headers, "transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        return dechunk(body);
    }
    match header(&headers, "content-length").and_then(|l| l.parse::<usize>().ok()) {
        Some(len) if body.len() >= len => Ok(body[..len].to_vec()),
        Some(len) => Err(format!("the page ended after {} of {len} bytes", body.len())),
        None => Ok(body.to_vec()),
    }
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(body.len());
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").ok_or("a truncated chunk")?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|_| "a bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "a bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("a truncated chunk".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Url::parse("http://127.0.0.1:9100/metrics", "/metrics"),
            Ok(Url::Http { host: "127.0.0.1".into(), port: 9100, path: "/metrics".into() })
        );
        assert_eq!(
            Url::parse("http://localhost:8000", "/").unwrap().to_string(),
            "http://localhost:8000/metrics"
        );
        assert!(Url::parse("http://[::1]:9/x", "/").unwrap().is_local());
        assert!(!Url::parse("http://10.0.0.1:9/x", "/").unwrap().is_local());
        assert_eq!(
            Url::parse("unix:///run/app.sock", "/metrics").unwrap().to_string(),
            "unix:///run/app.sock/metrics"
        );
        assert!(Url::parse("https://x/", "/").is_err());
        assert!(Url::parse("unix://relative.sock", "/").is_err());
    }

    #[test]
    fn bodies() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert!(complete(plain));
        assert_eq!(response_body(plain).unwrap(), b"hello");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        assert_eq!(response_body(chunked).unwrap(), b"hello");
        let to_end = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello";
        assert_eq!(response_body(to_end).unwrap(), b"hello");
        assert!(response_body(b"HTTP/1.1 500 Oops\r\n\r\n").unwrap_err().contains("500"));
        assert!(response_body(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nx").is_err());
        assert!(response_body(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
    }
}
