//! The client side of ZMTP 3.1 with CURVE (RFC 23, RFC 26), as libzmq's
//! DEALER speaks it to a libzmq ROUTER.
//!
//! Why not libzmq: the agent runs on every host, and libzmq (with
//! libstdc++, libsodium, Kerberos, OpenPGM and NORM behind it) is most of
//! its resident memory and a package to install everywhere. The agent needs
//! one connection, one peer, one-part messages and no socket patterns; that
//! is this crate. The collector keeps libzmq (ROUTER, ZAP), and the
//! integration tests run this client against it.
//!
//! The cryptography is RustCrypto's `crypto_box` (NaCl's box); this crate
//! only arranges keys, nonces and commands as RFC 26 prescribes.

mod client;
mod connect;
pub mod curve;
pub mod frame;
pub mod greeting;
mod resolve;

pub use client::{Client, Options, parse_endpoint};
pub use connect::{Connector, Progress};
pub use curve::Keys;

use thiserror::Error;

/// Why a connection could not be made or kept, precise enough for the
/// agent to say which key or address to check.
#[derive(Debug, Error)]
pub enum ZmtpError {
    /// Not `tcp://host:port`.
    #[error("{0:?} is not a tcp://host:port endpoint")]
    Endpoint(String),
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {error}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error (in the message, not a `source()`, so a
        /// chain printed with `{:#}` says it once).
        error: std::io::Error,
    },
    /// The TCP connection was refused or failed.
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        /// The address tried (the last one, when a name has several).
        addr: std::net::SocketAddr,
        /// The socket's error (in the message, not a `source()`).
        error: std::io::Error,
    },
    /// The deadline passed.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The interrupt descriptor turned readable (a signal).
    #[error("interrupted")]
    Interrupted,
    /// The server closed the connection.
    #[error("the server closed the connection{}", if .0.is_empty() { String::new() } else { format!(" {}", .0) })]
    Closed(&'static str),
    /// The server does not speak ZMTP 3.
    #[error("the server does not speak ZMTP (not a ZeroMQ socket)")]
    NotZmtp,
    /// The server offers another security mechanism.
    #[error("the server uses the {0} mechanism, not CURVE")]
    Mechanism(String),
    /// A box did not open: the wrong server key, or tampered traffic.
    #[error("CURVE: {0}")]
    Crypto(String),
    /// The server sent an ERROR command during the handshake (ZAP refused
    /// our key); its reason.
    #[error("the server refused the handshake ({0})")]
    Refused(String),
    /// A frame or command out of place.
    #[error("ZMTP protocol error: {0}")]
    Protocol(String),
    /// No randomness for the transient key or a nonce.
    #[error("no randomness available: {0}")]
    Random(String),
    /// Another socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
