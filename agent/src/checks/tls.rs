//! TLS for the checks: rustls on ring, trusting the host's CA bundle (or a
//! `ca_file`), or nothing at all when a check sets `verify_tls = false`.
//! The handshake runs under the check's deadline and its time is the `tls`
//! phase; the server's leaf certificate's expiry is read whether or not it
//! is verified.

use std::{
    io::{self, Read, Write},
    path::Path,
    sync::Arc,
    time::Instant,
};

use curvemon_protocol::{FailureReason, Phase};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
    StreamOwned,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

use super::Record;
use crate::net::{Deadline, Failure, Socket, Timed};

/// A check's TLS settings, built once at start-up.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Verifying against `ca_file` if given, else against the host's CA
    /// bundle; or, with `verify` false, accepting any certificate.
    ///
    /// # Errors
    /// A sentence: the CA file cannot be read, or holds no certificate, or
    /// the host has no CA bundle.
    pub fn new(verify: bool, ca_file: Option<&Path>) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?;
        let config = if verify {
            let mut roots = RootCertStore::empty();
            match ca_file {
                Some(path) => {
                    let certs = CertificateDer::pem_file_iter(path)
                        .map_err(|e| format!("ca_file {}: {e}", path.display()))?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(format!("ca_file {}: no certificate in it", path.display()));
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    let (added, _) = roots.add_parsable_certificates(found.certs);
                    if added == 0 {
                        return Err(
                            "the host has no CA certificates (install ca-certificates, or set \
                             ca_file or verify_tls = false)"
                                .into(),
                        );
                    }
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth()
        };
        Ok(Tls { config: Arc::new(config) })
    }

    /// Runs the handshake over `socket` for `host` by the deadline,
    /// recording the `tls` phase and the certificate's expiry.
    ///
    /// # Errors
    /// [`FailureReason::Tls`] (a bad or untrusted certificate, a server
    /// that does not speak TLS) or [`FailureReason::Timeout`].
    pub fn handshake(
        &self,
        socket: Socket,
        host: &str,
        deadline: Deadline,
        record: &mut Record,
    ) -> Result<Stream, Failure> {
        let started = Instant::now();
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| Failure::new(FailureReason::Tls, format!("server name {host:?}: {e}")))?;
        let mut conn = ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|e| Failure::new(FailureReason::Tls, format!("TLS set-up: {e}")))?;
        let mut socket = socket;
        while conn.is_handshaking() {
            let left = deadline.left("in the TLS handshake")?;
            socket
                .set_timeouts(left)
                .map_err(|e| Failure::new(FailureReason::Tls, format!("TLS handshake: {e}")))?;
            if let Err(e) = conn.complete_io(&mut socket) {
                record.cert_not_after = not_after(&conn);
                return Err(handshake_failure(&e));
            }
        }
        record.cert_not_after = not_after(&conn);
        record.phase(Phase::Tls, started.elapsed());
        Ok(Stream::Tls(Box::new(StreamOwned::new(conn, socket))))
    }
}

fn handshake_failure(error: &io::Error) -> Failure {
    if matches!(error.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) {
        return Failure::new(FailureReason::Timeout, "timed out in the TLS handshake");
    }
    let detail = match error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(tls) => format!("TLS handshake: {tls}"),
        None if error.kind() == io::ErrorKind::UnexpectedEof => {
            "TLS handshake: the server closed the connection".into()
        }
        None => format!("TLS handshake: {error}"),
    };
    Failure::new(FailureReason::Tls, detail)
}

/// The leaf certificate's notAfter, in Unix seconds.
fn not_after(conn: &ClientConnection) -> Option<i64> {
    use x509_cert::der::Decode as _;
    let leaf = conn.peer_certificates()?.first()?;
    let cert = x509_cert::Certificate::from_der(leaf.as_ref()).ok()?;
    i64::try_from(cert.tbs_certificate.validity.not_after.to_unix_duration().as_secs()).ok()
}

/// A check's connection, plain or TLS.
#[derive(Debug)]
pub enum Stream {
    /// No TLS.
    Plain(Socket),
    /// TLS over the socket.
    Tls(Box<StreamOwned<ClientConnection, Socket>>),
}

impl Stream {
    /// The socket under it (for its timeouts).
    pub fn socket(&self) -> &dyn Timed {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

/// `verify_tls = false`: every certificate is accepted, but the handshake
/// signatures are still checked (the server holds the key of the
/// certificate it sent).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
