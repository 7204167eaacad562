//! `kind = "http"`: a GET (or HEAD) of a URL over HTTP/1.1, with TLS for
//! `https`. Success: a status in the accepted set (2xx and 3xx unless
//! `expect_status` says otherwise; redirects are not followed) and, with
//! `body_regex`, a body that matches. Phases: `dns`, `connect`, `tls`,
//! `first_byte` (from the request sent to the first byte of the answer).

use std::{
    io::{Read, Write},
    time::Instant,
};

use curvemon_protocol::{FailureReason, Phase};
use regex_lite::Regex;

use super::{Record, Tls, fail};
use crate::{
    http1,
    net::{Address, Conn, Failure},
};

/// Body bytes read at most, by default.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

/// An `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https`.
    pub https: bool,
    /// Host and port.
    pub address: Address,
    /// Path and query.
    pub path: String,
}

impl Url {
    /// Parses `http[s]://host[:port][/path]`.
    ///
    /// # Errors
    /// What is expected.
    pub fn parse(text: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("{text:?}: expected http://... or https://..."));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err(format!("{text:?}: credentials in the URL are not supported"));
        }
        let address = Address::parse(authority, Some(if https { 443 } else { 80 }))
            .map_err(|e| format!("{text:?}: {e}"))?;
        if matches!(address, Address::Unix(_)) {
            return Err(format!("{text:?}: no host"));
        }
        if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!("{text:?}: spaces in the path must be written %20"));
        }
        Ok(Url { https, address, path })
    }

    fn host_header(&self) -> String {
        match &self.address {
            Address::Tcp { port, .. } if *port == if self.https { 443 } else { 80 } => {
                let host = self.address.host().unwrap_or_default();
                if host.contains(':') { format!("[{host}]") } else { host.to_string() }
            }
            address => address.to_string(),
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.path)
    }
}

/// One rule of `expect_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusRule {
    /// Exactly this code.
    Code(u16),
    /// Every code of this hundred (`2` for `2xx`).
    Class(u16),
}

impl StatusRule {
    /// Parses `"2xx"` (or a code written as text).
    ///
    /// # Errors
    /// What is expected.
    pub fn class(text: &str) -> Result<StatusRule, String> {
        let lower = text.to_ascii_lowercase();
        if let Some(d) = lower.strip_suffix("xx")
            && let Ok(class @ 1..=5) = d.parse::<u16>()
        {
            return Ok(StatusRule::Class(class));
        }
        match text.parse::<u16>() {
            Ok(code @ 100..=599) => Ok(StatusRule::Code(code)),
            _ => {
                Err(format!("expected codes such as 200 or classes such as \"2xx\", got {text:?}"))
            }
        }
    }
}

/// The accepted statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept(Vec<StatusRule>);

impl Default for Accept {
    fn default() -> Self {
        Accept(vec![StatusRule::Class(2), StatusRule::Class(3)])
    }
}

impl Accept {
    /// From `expect_status`'s entries.
    ///
    /// # Errors
    /// A bad entry, or none at all.
    pub fn from_list(
        rules: impl Iterator<Item = Result<StatusRule, String>>,
    ) -> Result<Accept, String> {
        let rules = rules.collect::<Result<Vec<_>, _>>()?;
        if rules.is_empty() {
            return Err("expected at least one code or class".into());
        }
        if let Some(StatusRule::Code(c)) =
            rules.iter().find(|r| matches!(r, StatusRule::Code(c) if !(100..=599).contains(c)))
        {
            return Err(format!("{c} is not an HTTP status"));
        }
        Ok(Accept(rules))
    }

    fn accepts(&self, status: u16) -> bool {
        self.0.iter().any(|r| match r {
            StatusRule::Code(c) => *c == status,
            StatusRule::Class(c) => status / 100 == *c,
        })
    }
}

/// The parameters of an HTTP check.
#[derive(Debug, Clone)]
pub struct Http {
    /// What to request.
    pub url: Url,
    /// `GET` or `HEAD`.
    pub method: String,
    /// The statuses that pass.
    pub accept: Accept,
    /// A pattern the body must match.
    pub body: Option<Regex>,
    /// Body bytes read at most.
    pub max_bytes: usize,
    /// TLS, for `https`.
    pub tls: Option<Tls>,
}

impl Http {
    /// The request and the checks of its response over an open connection.
    ///
    /// # Errors
    /// The first thing that went wrong.
    pub fn exchange<S: Read + Write>(
        &self,
        conn: &mut Conn<S>,
        record: &mut Record,
    ) -> Result<(), Failure> {
        let head = self.method == "HEAD";
        let request = http1::request(&self.method, &self.url.host_header(), &self.url.path, "*/*");
        let sent = Instant::now();
        let mut first = None;
        let response = http1::exchange(conn, &request, head, self.max_bytes, || {
            first = Some(sent.elapsed());
        });
        if let Some(took) = first {
            record.phase(Phase::FirstByte, took);
        }
        let response = response?;
        record.http_status = Some(response.status);
        if !self.accept.accepts(response.status) {
            return Err(fail(FailureReason::Status, format!("HTTP status {}", response.status)));
        }
        if let Some(pattern) = &self.body {
            let text = String::from_utf8_lossy(&response.body);
            if !pattern.is_match(&text) {
                return Err(fail(
                    FailureReason::Body,
                    format!(
                        "the body ({} bytes) does not match {}",
                        response.body.len(),
                        pattern.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = Url::parse("https://127.0.0.1:8443/health?deep=1").unwrap();
        assert!(url.https);
        assert_eq!(url.address, Address::Tcp { host: "127.0.0.1".into(), port: 8443 });
        assert_eq!(url.path, "/health?deep=1");
        assert_eq!(url.to_string(), "https://127.0.0.1:8443/health?deep=1");
        assert_eq!(Url::parse("http://example.org").unwrap().to_string(), "http://example.org/");
        assert_eq!(Url::parse("http://example.org?x").unwrap().path, "/?x");
        assert_eq!(Url::parse("https://[::1]/").unwrap().to_string(), "https://[::1]/");
        assert!(Url::parse("ftp://x/").is_err());
        assert!(Url::parse("http://user:pw@x/").is_err());
        assert!(Url::parse("http:///x").is_err());
        assert!(Url::parse("http://x/a b").is_err());
    }

    #[test]
    fn statuses() {
        let default = Accept::default();
        assert!(default.accepts(200) && default.accepts(301) && !default.accepts(404));
        let only =
            Accept::from_list([Ok(StatusRule::Code(204)), StatusRule::class("5xx")].into_iter())
                .unwrap();
        assert!(only.accepts(204) && only.accepts(503) && !only.accepts(200));
        assert!(StatusRule::class("7xx").is_err());
        assert!(Accept::from_list(std::iter::empty()).is_err());
        assert!(Accept::from_list([Ok(StatusRule::Code(42))].into_iter()).is_err());
    }
}
