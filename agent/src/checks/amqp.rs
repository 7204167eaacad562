//! `kind = "amqp"`: the AMQP 0-9-1 connection handshake to a vhost with a
//! user and password (PLAIN): protocol header, Start → Start-Ok, Tune →
//! Tune-Ok, Open → Open-Ok, then a clean Close → Close-Ok. Reports the
//! broker's product and version.
//!
//! Written here: the handshake is seven small frames, while the Rust AMQP
//! clients are asynchronous (lapin) or unmaintained, and would hide the
//! deadline of each step.
//!
//! Failures: credentials refused (Close 403, or the broker hanging up
//! right after Start-Ok, as brokers without `authentication_failure_close`
//! do) and a vhost that does not exist or is not allowed (Close 530) are
//! `auth`; anything else that is not AMQP 0-9-1 is `protocol`.

use std::io::{Read, Write};

use curvemon_protocol::FailureReason;

use super::{Record, Tls, config::Secret, fail};
use crate::net::{Address, Conn, Failure};

const FRAME_METHOD: u8 = 1;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;
/// The largest frame taken before Tune says otherwise.
const MAX_FRAME: usize = 1 << 20;

/// The parameters of an AMQP check.
#[derive(Debug, Clone)]
pub struct Amqp {
    /// Where.
    pub address: Address,
    /// TLS (`amqps`, port 5671 by default).
    pub tls: Option<Tls>,
    /// The virtual host.
    pub vhost: String,
    /// The user.
    pub user: String,
    /// Its password.
    pub password: Secret,
}

impl Amqp {
    /// The handshake over an open connection.
    ///
    /// # Errors
    /// The first thing that went wrong.
    pub fn exchange<S: Read + Write>(
        &self,
        conn: &mut Conn<S>,
        record: &mut Record,
    ) -> Result<(), Failure> {
        conn.send(b"AMQP\x00\x00\x09\x01", "sending the protocol header")?;

        let start = expect_method(conn, (10, 10), "waiting for Connection.Start")?;
        let mut args = Args(&start);
        args.u8()?;
        args.u8()?;
        let properties = args.table()?;
        let mechanisms = String::from_utf8_lossy(args.long_bytes()?).into_owned();
        record.server = [prop(&properties, "product"), prop(&properties, "version")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !mechanisms.split_whitespace().any(|m| m == "PLAIN") {
            return Err(fail(
                FailureReason::Auth,
                format!("the broker offers {mechanisms:?}; the agent speaks PLAIN"),
            ));
        }

        let mut start_ok = method(10, 11);
        client_properties(&mut start_ok);
        short_str(&mut start_ok, "PLAIN");
        let response = format!("\0{}\0{}", self.user, self.password.expose());
        long_str(&mut start_ok, response.as_bytes());
        short_str(&mut start_ok, "en_US");
        send_method(conn, &start_ok, "sending Connection.Start-Ok")?;

        let tune = match read_method(conn, "waiting for Connection.Tune") {
            Err(f) if f.reason == FailureReason::Protocol && f.detail.contains("closed") => {
                return Err(fail(
                    FailureReason::Auth,
                    format!(
                        "the broker hung up after the credentials: wrong user or password for {:?}",
                        self.user
                    ),
                ));
            }
            other => other?,
        };
        let tune = body_of(conn, tune, (10, 30))?;
        let mut args = Args(&tune);
        let channel_max = args.u16()?;
        let frame_max = args.u32()?;
        let mut tune_ok = method(10, 31);
        tune_ok.extend_from_slice(&channel_max.to_be_bytes());
        tune_ok.extend_from_slice(&frame_max.to_be_bytes());
        tune_ok.extend_from_slice(&0u16.to_be_bytes());
        send_method(conn, &tune_ok, "sending Connection.Tune-Ok")?;

        let mut open_method = method(10, 40);
        short_str(&mut open_method, &self.vhost);
        short_str(&mut open_method, "");
        open_method.push(0);
        send_method(conn, &open_method, "sending Connection.Open")?;
        expect_method(conn, (10, 41), "waiting for Connection.Open-Ok")?;

        let mut close = method(10, 50);
        close.extend_from_slice(&200u16.to_be_bytes());
        short_str(&mut close, "curvemon check done");
        close.extend_from_slice(&[0, 0, 0, 0]);
        send_method(conn, &close, "sending Connection.Close")?;
        expect_method(conn, (10, 51), "waiting for Connection.Close-Ok")?;
        Ok(())
    }
}

/// A method frame's payload: (class, method) and the arguments.
type Method = ((u16, u16), Vec<u8>);

fn method(class: u16, id: u16) -> Vec<u8> {
    let mut out = class.to_be_bytes().to_vec();
    out.extend_from_slice(&id.to_be_bytes());
    out
}

fn short_str(out: &mut Vec<u8>, text: &str) {
    let bytes = &text.as_bytes()[..text.len().min(255)];
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

fn long_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// `product`, `version` and the capability that makes a broker say why it
/// refuses credentials instead of hanging up.
fn client_properties(out: &mut Vec<u8>) {
    let mut capabilities = Vec::new();
    short_str(&mut capabilities, "authentication_failure_close");
    capabilities.extend_from_slice(&[b't', 1]);
    let mut table = Vec::new();
    short_str(&mut table, "product");
    table.push(b'S');
    long_str(&mut table, b"curvemon-agent");
    short_str(&mut table, "version");
    table.push(b'S');
    long_str(&mut table, env!("CARGO_PKG_VERSION").as_bytes());
    short_str(&mut table, "capabilities");
    table.push(b'F');
    long_str(&mut table, &capabilities);
    long_str(out, &table);
}

fn send_method<S: Read + Write>(
    conn: &mut Conn<S>,
    payload: &[u8],
    step: &str,
) -> Result<(), Failure> {
    let mut frame = vec![FRAME_METHOD, 0, 0];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame.push(FRAME_END);
    conn.send(&frame, step)
}

/// The next method frame on channel 0 (heartbeats skipped).
fn read_method<S: Read + Write>(conn: &mut Conn<S>, step: &str) -> Result<Method, Failure> {
    loop {
        let mut header = [0u8; 7];
        conn.receive_exact(&mut header, step).map_err(|f| {
            if f.detail.contains("closed") {
                fail(FailureReason::Protocol, format!("{step}: the broker closed the connection"))
            } else {
                f
            }
        })?;
        if &header[..4] == b"AMQP" {
            let mut rest = [0u8; 1];
            let _ = conn.receive_exact(&mut rest, step);
            return Err(fail(
                FailureReason::Protocol,
                format!(
                    "the broker does not speak AMQP 0-9-1 (it answered with protocol {}-{}-{})",
                    header[5], header[6], rest[0]
                ),
            ));
        }
        let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
        if size > MAX_FRAME || !matches!(header[0], FRAME_METHOD | FRAME_HEARTBEAT | 2 | 3) {
            let shown = String::from_utf8_lossy(&header).into_owned();
            return Err(fail(
                FailureReason::Protocol,
                format!("{step}: not an AMQP frame ({shown:?})"),
            ));
        }
        let mut payload = vec![0u8; size + 1];
        conn.receive_exact(&mut payload, step)?;
        if payload.pop() != Some(FRAME_END) {
            return Err(fail(
                FailureReason::Protocol,
                format!("{step}: a frame without its end byte"),
            ));
        }
        if header[0] != FRAME_METHOD {
            continue;
        }
        if payload.len() < 4 {
            return Err(fail(FailureReason::Protocol, format!("{step}: a method frame too short")));
        }
        let class = u16::from_be_bytes([payload[0], payload[1]]);
        let id = u16::from_be_bytes([payload[2], payload[3]]);
        return Ok(((class, id), payload.split_off(4)));
    }
}

/// The arguments of `method` if it is `want`; a Connection.Close is
/// answered and turned into a failure.
fn body_of<S: Read + Write>(
    conn: &mut Conn<S>,
    method: Method,
    want: (u16, u16),
) -> Result<Vec<u8>, Failure> {
    let (got, args) = method;
    if got == want {
        return Ok(args);
    }
    if got == (10, 50) {
        let mut a = Args(&args);
        let code = a.u16().unwrap_or(0);
        let text = a.short().unwrap_or_default();
        let _ = send_method(conn, &method_close_ok(), "sending Connection.Close-Ok");
        let reason =
            if matches!(code, 403 | 530) { FailureReason::Auth } else { FailureReason::Status };
        return Err(fail(reason, format!("the broker closed the connection: {code} {text}")));
    }
    Err(fail(
        FailureReason::Protocol,
        format!("expected method {}.{}, got {}.{}", want.0, want.1, got.0, got.1),
    ))
}

fn method_close_ok() -> Vec<u8> {
    method(10, 51)
}

fn expect_method<S: Read + Write>(
    conn: &mut Conn<S>,
    want: (u16, u16),
    step: &str,
) -> Result<Vec<u8>, Failure> {
    let got = read_method(conn, step)?;
    body_of(conn, got, want)
}

/// A reader over method arguments; running out is a protocol failure.
struct Args<'a>(&'a [u8]);

impl<'a> Args<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Failure> {
        if self.0.len() < n {
            return Err(fail(FailureReason::Protocol, "a method's arguments end early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Failure> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Failure> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Failure> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn short(&mut self) -> Result<String, Failure> {
        let n = self.u8()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    fn long_bytes(&mut self) -> Result<&'a [u8], Failure> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A field table: its long-string entries, the others skipped.
    fn table(&mut self) -> Result<Vec<(String, String)>, Failure> {
        let mut fields = Args(self.long_bytes()?);
        let mut out = Vec::new();
        while !fields.0.is_empty() {
            let name = fields.short()?;
            let kind = fields.u8()?;
            let skip = match kind {
                b't' | b'b' | b'B' => 1,
                b's' | b'u' => 2,
                b'I' | b'i' | b'f' => 4,
                b'l' | b'd' | b'T' => 8,
                b'D' => 5,
                b'V' => 0,
                b'S' => {
                    let value = fields.long_bytes()?;
                    out.push((name, String::from_utf8_lossy(value).into_owned()));
                    continue;
                }
                b'x' | b'A' | b'F' => {
                    fields.long_bytes()?;
                    continue;
                }
                other => {
                    return Err(fail(
                        FailureReason::Protocol,
                        format!("a field table with an unknown type {:?}", other as char),
                    ));
                }
            };
            fields.take(skip)?;
        }
        Ok(out)
    }
}

fn prop(properties: &[(String, String)], name: &str) -> Option<String> {
    properties.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        let mut table = Vec::new();
        client_properties(&mut table);
        let mut args = Args(&table);
        let parsed = args.table().unwrap();
        assert_eq!(prop(&parsed, "product").as_deref(), Some("curvemon-agent"));
        assert!(args.0.is_empty());
        assert!(Args(&[0, 0, 0, 9, 1, b'a', b'?', 0, 0, 0, 0, 0, 0]).table().is_err());
        assert!(Args(&[0, 0, 0, 200]).table().is_err());
    }
}
