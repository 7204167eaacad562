//! `kind = "redis"`: `AUTH` (password, or user and password for ACLs) when
//! configured, `PING` → `PONG`, then `ROLE` for the server's role
//! (`master`, `slave`, `sentinel`), then `QUIT`.
//!
//! RESP2 is written here: four commands and a reply reader are smaller
//! than a client library, and the check needs every step under one
//! deadline.

use std::io::{Read, Write};

use curvemon_protocol::FailureReason;

use super::{Record, Tls, config::Secret, fail};
use crate::net::{Address, Conn, Failure};

/// The parameters of a Redis check.
#[derive(Debug, Clone)]
pub struct Redis {
    /// Where.
    pub address: Address,
    /// TLS on the connection.
    pub tls: Option<Tls>,
    /// An ACL user (Redis 6+), with the password.
    pub user: Option<String>,
    /// The password.
    pub password: Option<Secret>,
}

impl Redis {
    /// The conversation over an open connection.
    ///
    /// # Errors
    /// The first thing that went wrong.
    pub fn exchange<S: Read + Write>(
        &self,
        conn: &mut Conn<S>,
        record: &mut Record,
    ) -> Result<(), Failure> {
        let conn = &mut *conn;
        let mut reader = Replies::default();
        if let Some(password) = &self.password {
            let mut args = vec!["AUTH"];
            args.extend(self.user.as_deref());
            args.push(password.expose());
            conn.send(&command(&args), "sending AUTH")?;
            match reader.next(conn, "waiting for the AUTH reply")? {
                Reply::Simple(ok) if ok == "OK" => {}
                Reply::Error(e) => return Err(fail(FailureReason::Auth, format!("AUTH: {e}"))),
                other => return Err(unexpected("AUTH", &other)),
            }
        }
        conn.send(&command(&["PING"]), "sending PING")?;
        match reader.next(conn, "waiting for PONG")? {
            Reply::Simple(pong) if pong == "PONG" => {}
            Reply::Error(e) if e.starts_with("NOAUTH") || e.starts_with("WRONGPASS") => {
                return Err(fail(FailureReason::Auth, format!("PING: {e}")));
            }
            Reply::Error(e) => return Err(fail(FailureReason::Status, format!("PING: {e}"))),
            other => return Err(unexpected("PING", &other)),
        }
        // The role is a bonus: a user whose ACL forbids ROLE still passes.
        conn.send(&command(&["ROLE"]), "sending ROLE")?;
        if let Reply::Array(Some(items)) = reader.next(conn, "waiting for the ROLE reply")?
            && let Some(Reply::Bulk(Some(role))) = items.first()
        {
            record.server = String::from_utf8_lossy(role).into_owned();
        }
        let _ = conn.send(&command(&["QUIT"]), "sending QUIT");
        Ok(())
    }
}

fn unexpected(after: &str, reply: &Reply) -> Failure {
    let shown: String = format!("{reply:?}").chars().take(80).collect();
    fail(FailureReason::Protocol, format!("{after}: unexpected reply {shown}"))
}

/// A command as a RESP array of bulk strings.
fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// Reads replies from a connection, keeping what arrived beyond one.
#[derive(Default)]
struct Replies {
    buf: Vec<u8>,
}

/// Bounds on what a server may send, so a wrong server cannot make the
/// agent allocate much.
const MAX_BULK: usize = 1 << 20;
const MAX_ITEMS: usize = 1024;
const MAX_DEPTH: usize = 4;

impl Replies {
    fn next<S: Read + Write>(&mut self, conn: &mut Conn<S>, step: &str) -> Result<Reply, Failure> {
        loop {
            match parse(&self.buf, 0) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => return Err(fail(FailureReason::Protocol, format!("{step}: {e}"))),
            }
            let mut chunk = [0u8; 4096];
            let n = conn.receive(&mut chunk, step)?;
            if n == 0 {
                return Err(fail(
                    FailureReason::Protocol,
                    format!("{step}: the server closed the connection"),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// One reply from the front of `buf` and the bytes it took; `None` when
/// more bytes are needed.
fn parse(buf: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, String> {
    let Some(&kind) = buf.first() else { return Ok(None) };
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_BULK {
            return Err("a reply line without an end".into());
        }
        return Ok(None);
    };
    if end == 0 {
        return Err("an empty reply line".into());
    }
    let line = std::str::from_utf8(&buf[1..end]).map_err(|_| "a reply that is not text")?;
    let after = end + 2;
    let number = || line.parse::<i64>().map_err(|_| format!("{line:?} is not a number"));
    let reply = match kind {
        b'+' => (Reply::Simple(line.to_string()), after),
        b'-' => (Reply::Error(line.to_string()), after),
        b':' => (Reply::Integer(number()?), after),
        b'$' => {
            let len = number()?;
            if len < 0 {
                (Reply::Bulk(None), after)
            } else {
                let len = usize::try_from(len).map_err(|_| "a bad length")?;
                if len > MAX_BULK {
                    return Err(format!("a bulk reply of {len} bytes"));
                }
                if buf.len() < after + len + 2 {
                    return Ok(None);
                }
                (Reply::Bulk(Some(buf[after..after + len].to_vec())), after + len + 2)
            }
        }
        b'*' => {
            let len = number()?;
            if len < 0 {
                (Reply::Array(None), after)
            } else {
                let len = usize::try_from(len).map_err(|_| "a bad length")?;
                if len > MAX_ITEMS || depth >= MAX_DEPTH {
                    return Err(format!("an array of {len} at depth {depth}"));
                }
                let mut items = Vec::with_capacity(len);
                let mut at = after;
                for _ in 0..len {
                    match parse(&buf[at..], depth + 1)? {
                        Some((item, used)) => {
                            items.push(item);
                            at += used;
                        }
                        None => return Ok(None),
                    }
                }
                (Reply::Array(Some(items)), at)
            }
        }
        other => {
            let shown: String = String::from_utf8_lossy(&buf[..end.min(40)]).into_owned();
            return Err(format!("not a Redis reply (starts with {:?}: {shown:?})", other as char));
        }
    };
    Ok(Some(reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_replies() {
        assert_eq!(command(&["AUTH", "pw"]), b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n");
        assert_eq!(parse(b"+PONG\r\n", 0), Ok(Some((Reply::Simple("PONG".into()), 7))));
        assert_eq!(parse(b"+PON", 0), Ok(None));
        assert_eq!(
            parse(b"-WRONGPASS invalid\r\n", 0).unwrap().unwrap().0,
            Reply::Error("WRONGPASS invalid".into())
        );
        let role = b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n";
        assert_eq!(
            parse(role, 0),
            Ok(Some((
                Reply::Array(Some(vec![
                    Reply::Bulk(Some(b"master".to_vec())),
                    Reply::Integer(0),
                    Reply::Array(Some(vec![]))
                ])),
                role.len()
            )))
        );
        assert_eq!(parse(&role[..10], 0), Ok(None));
        assert!(parse(b"HTTP/1.1 400 Bad Request\r\n", 0).is_err());
        assert!(parse(b"\r\n", 0).is_err());
        assert!(parse(b"$99999999999\r\n", 0).is_err());
        assert!(parse(b"*-1\r\n", 0).unwrap().is_some());
        assert!(parse(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", 0).is_err());
    }
}
