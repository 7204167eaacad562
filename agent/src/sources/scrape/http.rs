//! A scrape target's address, and one GET of its page ([`crate::http1`]
//! over [`crate::net`]), bounded in bytes and in time. No TLS and no
//! redirects: targets are on this host (127.0.0.1 or a Unix socket) unless
//! the operator allows others.

use std::{path::PathBuf, time::Duration};

use crate::{
    http1,
    net::{Address, Conn, Deadline, Socket, Timed},
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

/// GETs `url`: the body as text, within `timeout` and `max_bytes`.
///
/// # Errors
/// Why there is no page: connection, timeout, status, size, encoding.
pub fn get(url: &Url, timeout: Duration, max_bytes: usize) -> Result<String, String> {
    let deadline = Deadline::after(timeout);
    let (address, host, path) = match url {
        Url::Http { host, port, path } => {
            let address = Address::Tcp { host: host.clone(), port: *port };
            (address.clone(), address.to_string(), path)
        }
        Url::Unix { socket, path } => (Address::Unix(socket.clone()), "localhost".into(), path),
    };
    let socket = Socket::connect(&address, deadline, |_, _| {}).map_err(|e| e.detail)?;
    let mut conn = Conn::new(socket, deadline, |s| s as &dyn Timed);
    let request = http1::request("GET", &host, path, "text/plain;version=0.0.4");
    let response =
        http1::exchange(&mut conn, &request, false, max_bytes, || {}).map_err(|e| e.detail)?;
    if response.status != 200 {
        return Err(format!("HTTP status {}", response.status));
    }
    if response.header("content-encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
        return Err("a compressed page (the agent asks for none)".into());
    }
    String::from_utf8(response.body).map_err(|_| "the page is not UTF-8".into())
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
}
