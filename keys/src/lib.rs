//! CurveZMQ keys for curvemon, stored the way the ZeroMQ tool chain stores them.
//!
//! A certificate is two files in CZMQ's `zcert` format (ZPL text, ZeroMQ
//! RFC 4): `NAME.key` holds the public key and may be shared; `NAME.key_secret`
//! holds both keys, is created with mode 0600 and is refused on load when
//! group or others can read it, or when another user owns it. Keys are made
//! here in pure Rust (X25519, which is what CURVE uses), so this crate does not
//! need libzmq; the end-to-end tests prove that libzmq accepts them.
//!
//! Layout:
//! - [`z85`]: ZeroMQ's base-85 text encoding of keys (RFC 32).
//! - [`key`]: [`PublicKey`], [`SecretKey`] (redacted, zeroized) and [`KeyPair`].
//! - [`zpl`]: the minimal ZPL reader and writer the certificates need.
//! - [`cert`]: reading and writing certificate files, with permission checks.
//! - [`allowlist`]: the collector's directory of authorized agent keys.
//! - [`keygen`]: what the binaries' `keygen` subcommands do.

pub mod allowlist;
pub mod cert;
pub mod error;
pub mod key;
pub mod keygen;
pub mod z85;
pub mod zpl;

pub use allowlist::{AuthorizedAgent, AuthorizedKeys};
pub use cert::{PublicCert, SecretCert};
pub use error::KeyError;
pub use key::{KeyPair, PublicKey, SecretKey};
