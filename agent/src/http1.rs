//! Just enough HTTP/1.1 for the agent's own requests (scrapes of local
//! `/metrics` pages, HTTP availability checks): one request per connection
//! (`Connection: close`), a body of `Content-Length`, chunked or read to
//! the end, bounded in bytes, over any [`Conn`] (plain or TLS).
//!
//! Written here rather than taken from an HTTP client library: the agent
//! needs one GET with a deadline on every step and the time of each phase
//! (connect, TLS, first byte), which client libraries hide, and a library
//! would cost every agent more memory than the rest of these features.

use std::io::{Read, Write};

use curvemon_protocol::FailureReason;

use crate::net::{Conn, Failure};

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names in lower case, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The request line and headers of a GET or HEAD.
pub fn request(method: &str, host: &str, path: &str, accept: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curvemon-agent/{}\r\n\
         Accept: {accept}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Sends `request` and reads the whole response, at most `max_body`
/// bytes of body; `first_byte` is called when the first byte arrives.
///
/// # Errors
/// Timeout, [`FailureReason::Protocol`] (closed early, not HTTP), or a
/// body over `max_body` ([`FailureReason::Body`]).
pub fn exchange<S: Read + Write>(
    conn: &mut Conn<S>,
    request: &str,
    no_body: bool,
    max_body: usize,
    mut first_byte: impl FnMut(),
) -> Result<Response, Failure> {
    conn.send(request.as_bytes(), "sending the request")?;
    let limit = max_body + 64 * 1024;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let step = if raw.is_empty() { "waiting for the response" } else { "reading the response" };
        let n = conn.receive(&mut chunk, step)?;
        if n == 0 {
            break;
        }
        if raw.is_empty() {
            first_byte();
        }
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() > limit {
            return Err(Failure::new(
                FailureReason::Body,
                format!("the response is larger than {max_body} bytes"),
            ));
        }
        if complete(&raw, no_body) {
            break;
        }
    }
    if raw.is_empty() {
        return Err(Failure::new(
            FailureReason::Protocol,
            "the server closed the connection without a response",
        ));
    }
    let response = parse(&raw, no_body).map_err(|e| Failure::new(FailureReason::Protocol, e))?;
    if response.body.len() > max_body {
        return Err(Failure::new(
            FailureReason::Body,
            format!("the response is larger than {max_body} bytes"),
        ));
    }
    Ok(response)
}

/// A response's head: where the body starts, the headers and the status.
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
    let status_line = lines.next()?;
    if !status_line.starts_with("HTTP/") {
        return None;
    }
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Head { body_start: end + 4, headers, status })
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn chunked(headers: &[(String, String)]) -> bool {
    header(headers, "transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
}

/// Whether the response is whole, so that a server that keeps the
/// connection open need not be waited for.
fn complete(raw: &[u8], no_body: bool) -> bool {
    let Some(Head { body_start, headers, status }) = head(raw) else { return false };
    if no_body || status == 204 || status == 304 || (100..200).contains(&status) {
        return true;
    }
    if chunked(&headers) {
        return raw.ends_with(b"\r\n0\r\n\r\n") || raw[body_start..].starts_with(b"0\r\n\r\n");
    }
    header(&headers, "content-length")
        .and_then(|l| l.parse::<usize>().ok())
        .is_some_and(|len| raw.len() >= body_start + len)
}

/// Parses a complete response.
///
/// # Errors
/// What is wrong with it.
pub fn parse(raw: &[u8], no_body: bool) -> Result<Response, String> {
    let Head { body_start, headers, status } = head(raw).ok_or("not an HTTP response")?;
    if no_body {
        return Ok(Response { status, headers, body: Vec::new() });
    }
    let body = &raw[body_start..];
    let body = if chunked(&headers) {
        dechunk(body)?
    } else {
        match header(&headers, "content-length").and_then(|l| l.parse::<usize>().ok()) {
            Some(len) if body.len() >= len => body[..len].to_vec(),
            Some(len) => {
                return Err(format!("the body ended after {} of {len} bytes", body.len()));
            }
            None => body.to_vec(),
        }
    };
    Ok(Response { status, headers, body })
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
        if body.len() < size.saturating_add(2) {
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
    fn bodies() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert!(complete(plain, false));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false));
        assert_eq!(parse(plain, false).unwrap().body, b"hello");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        assert!(complete(chunked, false));
        assert_eq!(parse(chunked, false).unwrap().body, b"hello");
        let to_end = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello";
        assert!(!complete(to_end, false));
        assert_eq!(parse(to_end, false).unwrap().body, b"hello");
        let error = parse(b"HTTP/1.1 500 Oops\r\n\r\n", false).unwrap();
        assert_eq!(error.status, 500);
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", false).is_err());
        assert!(parse(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", false).is_err());
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n";
        assert!(complete(head, true));
        assert_eq!(parse(head, true).unwrap().body, b"");
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nx";
        assert!(parse(huge, false).is_err());
    }
}
