//! `kind = "postgres"`: a full login (trust, cleartext, MD5 or
//! SCRAM-SHA-256; TLS first if `tls = true`), `SELECT 1`, and a clean
//! Terminate. Reports the server's `server_version`, and on failure the
//! SQLSTATE with the server's message.
//!
//! The messages and the password hashing come from `postgres-protocol`
//! (rust-postgres's own protocol crate); only the order of the exchange is
//! written here, so that each read and write runs under the check's
//! deadline without an async client.

use std::io::{Read, Write};

use bytes::BytesMut;
use curvemon_protocol::FailureReason;
use fallible_iterator::FallibleIterator as _;
use postgres_protocol::{
    authentication::{
        md5_hash,
        sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256},
    },
    message::{backend::Message, frontend},
};

use super::{Record, Stream, Tls, config::Secret, connect, fail};
use crate::net::{Address, Conn, Deadline, Failure};

/// The largest message taken from a server (a wrong server's length
/// prefix must not size a buffer).
const MAX_MESSAGE: usize = 1 << 20;

/// The parameters of a PostgreSQL check.
#[derive(Debug, Clone)]
pub struct Postgres {
    /// `host:port`, or a Unix socket (a directory gets `.s.PGSQL.5432`).
    pub address: Address,
    /// TLS (asked for with an SSLRequest).
    pub tls: Option<Tls>,
    /// The database.
    pub database: String,
    /// The role.
    pub user: String,
    /// Its password.
    pub password: Option<Secret>,
}

impl Postgres {
    /// One login and query.
    ///
    /// # Errors
    /// The first thing that went wrong.
    pub fn run(&self, deadline: Deadline, record: &mut Record) -> Result<(), Failure> {
        let address = match &self.address {
            Address::Unix(dir) if dir.is_dir() => Address::Unix(dir.join(".s.PGSQL.5432")),
            other => other.clone(),
        };
        let socket = connect(&address, deadline, record)?;
        let stream = match &self.tls {
            None => Stream::Plain(socket),
            Some(tls) => {
                let mut conn = Conn::new(Stream::Plain(socket), deadline, Stream::socket);
                let mut buf = BytesMut::new();
                frontend::ssl_request(&mut buf);
                conn.send(&buf, "asking for TLS")?;
                let mut answer = [0u8; 1];
                conn.receive_exact(&mut answer, "waiting for the answer to the TLS request")?;
                match answer[0] {
                    b'S' => {}
                    b'N' => {
                        return Err(fail(
                            FailureReason::Tls,
                            "the server does not accept TLS (ssl = off)",
                        ));
                    }
                    other => {
                        return Err(fail(
                            FailureReason::Protocol,
                            format!(
                                "not a PostgreSQL answer to a TLS request: {:?}",
                                other as char
                            ),
                        ));
                    }
                }
                let Stream::Plain(socket) = conn.into_inner() else { unreachable!("plain above") };
                let host = address.host().unwrap_or("localhost").to_string();
                tls.handshake(socket, &host, deadline, record)?
            }
        };
        self.exchange(&mut Conn::new(stream, deadline, Stream::socket), record)
    }

    /// Login, query and goodbye over an open connection (TLS already
    /// negotiated if wanted).
    ///
    /// # Errors
    /// The first thing that went wrong.
    pub fn exchange<S: Read + Write>(
        &self,
        conn: &mut Conn<S>,
        record: &mut Record,
    ) -> Result<(), Failure> {
        let mut session = Session { conn, buf: BytesMut::new() };
        session.login(self, record)?;
        session.select_one()?;
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = session.conn.send(&out, "saying goodbye");
        Ok(())
    }
}

struct Session<'a, S> {
    conn: &'a mut Conn<S>,
    buf: BytesMut,
}

impl<S: Read + Write> Session<'_, S> {
    fn send(
        &mut self,
        step: &str,
        write: impl FnOnce(&mut BytesMut) -> std::io::Result<()>,
    ) -> Result<(), Failure> {
        let mut out = BytesMut::new();
        write(&mut out).map_err(|e| fail(FailureReason::Protocol, format!("{step}: {e}")))?;
        self.conn.send(&out, step)
    }

    fn next(&mut self, step: &str) -> Result<Message, Failure> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if len > MAX_MESSAGE {
                    return Err(not_postgres(&self.buf));
                }
            }
            match Message::parse(&mut self.buf) {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(_) => return Err(not_postgres(&self.buf)),
            }
            let mut chunk = [0u8; 8192];
            let n = self.conn.receive(&mut chunk, step)?;
            if n == 0 {
                return Err(fail(
                    FailureReason::Protocol,
                    format!("{step}: the server closed the connection"),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn login(&mut self, check: &Postgres, record: &mut Record) -> Result<(), Failure> {
        let params = [
            ("user", check.user.as_str()),
            ("database", check.database.as_str()),
            ("application_name", "curvemon-agent"),
        ];
        self.send("sending the startup message", |b| frontend::startup_message(params, b))?;
        let password = || {
            check.password.as_ref().map(|p| p.expose().as_bytes()).ok_or_else(|| {
                fail(FailureReason::Auth, "the server asks for a password and the check has none")
            })
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            match self.next("logging in")? {
                Message::AuthenticationOk
                | Message::BackendKeyData(_)
                | Message::NoticeResponse(_) => {}
                Message::AuthenticationCleartextPassword => {
                    let pw = password()?;
                    self.send("sending the password", |b| frontend::password_message(pw, b))?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(check.user.as_bytes(), password()?, body.salt());
                    self.send("sending the password", |b| {
                        frontend::password_message(hash.as_bytes(), b)
                    })?;
                }
                Message::AuthenticationSasl(body) => {
                    let mechanisms: Vec<String> =
                        body.mechanisms().map(|m| Ok(m.to_string())).collect().unwrap_or_default();
                    if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(fail(
                            FailureReason::Auth,
                            format!(
                                "the server offers SASL {mechanisms:?}; the agent speaks SCRAM-SHA-256"
                            ),
                        ));
                    }
                    // "n": no channel binding. "y" (unrequested) would tell a
                    // TLS server offering SCRAM-SHA-256-PLUS that the client
                    // believes it offers none, which it rightly refuses.
                    let state = ScramSha256::new(password()?, ChannelBinding::unsupported());
                    self.send("starting SCRAM", |b| {
                        frontend::sasl_initial_response(SCRAM_SHA_256, state.message(), b)
                    })?;
                    scram = Some(state);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let state = scram.as_mut().ok_or_else(|| {
                        fail(FailureReason::Protocol, "SCRAM data before SCRAM began")
                    })?;
                    state
                        .update(body.data())
                        .map_err(|e| fail(FailureReason::Auth, format!("SCRAM: {e}")))?;
                    let message = state.message().to_vec();
                    self.send("continuing SCRAM", |b| frontend::sasl_response(&message, b))?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let mut state = scram.take().ok_or_else(|| {
                        fail(FailureReason::Protocol, "SCRAM end before SCRAM began")
                    })?;
                    state.finish(body.data()).map_err(|e| {
                        fail(FailureReason::Auth, format!("the server's SCRAM proof is wrong: {e}"))
                    })?;
                }
                Message::ParameterStatus(body) => {
                    if body.name().is_ok_and(|n| n == "server_version") {
                        record.server = body.value().unwrap_or_default().to_string();
                    }
                }
                Message::ErrorResponse(body) => return Err(server_error(body.fields())),
                Message::ReadyForQuery(_) => return Ok(()),
                Message::AuthenticationGss
                | Message::AuthenticationKerberosV5
                | Message::AuthenticationScmCredential
                | Message::AuthenticationSspi
                | Message::AuthenticationGssContinue(_) => {
                    return Err(fail(
                        FailureReason::Auth,
                        "the server asks for GSSAPI, Kerberos or SSPI; the agent speaks passwords and SCRAM",
                    ));
                }
                _ => {
                    return Err(fail(
                        FailureReason::Protocol,
                        "an unexpected message while logging in",
                    ));
                }
            }
        }
    }

    fn select_one(&mut self) -> Result<(), Failure> {
        self.send("sending SELECT 1", |b| frontend::query("SELECT 1", b))?;
        let mut answered = false;
        loop {
            match self.next("waiting for SELECT 1")? {
                Message::RowDescription(_)
                | Message::CommandComplete(_)
                | Message::NoticeResponse(_) => {}
                Message::ParameterStatus(_) => {}
                Message::DataRow(row) => {
                    answered = row.buffer().ends_with(b"1");
                }
                Message::ErrorResponse(body) => return Err(server_error(body.fields())),
                Message::ReadyForQuery(_) if answered => return Ok(()),
                Message::ReadyForQuery(_) => {
                    return Err(fail(FailureReason::Protocol, "SELECT 1 did not return 1"));
                }
                _ => {
                    return Err(fail(
                        FailureReason::Protocol,
                        "an unexpected message after SELECT 1",
                    ));
                }
            }
        }
    }
}

/// An ErrorResponse as a failure: SQLSTATE class 28 (credentials) and
/// 3D000 (no such database) are `auth`; anything else is `status`.
fn server_error(mut fields: postgres_protocol::message::backend::ErrorFields<'_>) -> Failure {
    let (mut code, mut message) = (String::new(), String::new());
    while let Ok(Some(field)) = fields.next() {
        match field.type_() {
            b'C' => code = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            _ => {}
        }
    }
    let reason = if code.starts_with("28") || code == "3D000" {
        FailureReason::Auth
    } else {
        FailureReason::Status
    };
    fail(reason, format!("SQLSTATE {code}: {message}"))
}

fn not_postgres(buf: &[u8]) -> Failure {
    let shown: String = String::from_utf8_lossy(&buf[..buf.len().min(40)]).into_owned();
    fail(FailureReason::Protocol, format!("not a PostgreSQL server (it sent {shown:?})"))
}
