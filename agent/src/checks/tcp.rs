//! `kind = "tcp"`: a connection (with TLS if `tls = true`) and, optionally,
//! `send` (written as given; TOML escapes such as `\r\n` apply) and
//! `expect`, a pattern the answer must match (read until it does, the
//! server closes, 64 KiB, or the deadline).

use std::io::{Read, Write};

use curvemon_protocol::FailureReason;
use regex_lite::Regex;

use super::{Tls, fail};
use crate::net::{Address, Conn, Failure};

/// Answer bytes read at most while waiting for `expect`.
const MAX_ANSWER: usize = 64 * 1024;

/// The parameters of a TCP check.
#[derive(Debug, Clone)]
pub struct Tcp {
    /// Where.
    pub address: Address,
    /// TLS on the connection.
    pub tls: Option<Tls>,
    /// Sent once connected.
    pub send: Option<String>,
    /// What the answer must match.
    pub expect: Option<Regex>,
}

impl Tcp {
    /// The send/expect exchange over an open connection.
    ///
    /// # Errors
    /// The first thing that went wrong.
    pub fn exchange<S: Read + Write>(&self, conn: &mut Conn<S>) -> Result<(), Failure> {
        if let Some(send) = &self.send {
            conn.send(send.as_bytes(), "sending")?;
        }
        let Some(expect) = &self.expect else { return Ok(()) };
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = conn.receive(&mut buf, "waiting for the expected answer")?;
            answer.extend_from_slice(&buf[..n]);
            if expect.is_match(&String::from_utf8_lossy(&answer)) {
                return Ok(());
            }
            if n == 0 || answer.len() >= MAX_ANSWER {
                let shown: String = String::from_utf8_lossy(&answer).chars().take(80).collect();
                return Err(fail(
                    FailureReason::Body,
                    format!("the answer {shown:?} does not match {}", expect.as_str()),
                ));
            }
        }
    }
}
