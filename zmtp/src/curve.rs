//! The CurveZMQ client handshake and message boxes (RFC 26), without I/O.
//!
//! ```text
//! C → S  HELLO     C', Box[64 zeros](C' → S)
//! S → C  WELCOME   Box[S' + cookie](S → C')
//! C → S  INITIATE  cookie, Box[C + vouch + metadata](C' → S'),
//!                  vouch = Box[C' + S](C → S')
//! S → C  READY     Box[metadata](S' → C')
//! both   MESSAGE   Box[flags + data](C' ↔ S'), nonces strictly increasing
//! ```
//!
//! Boxes are NaCl's `crypto_box` (X25519, XSalsa20, Poly1305), from the
//! RustCrypto `crypto_box` crate; its output (tag, then ciphertext) is
//! libsodium's `crypto_box_easy` layout, which libzmq puts on the wire.
//! Short nonces are 8-octet counters in network order after a 16-octet
//! prefix that names the command; ours start at 1 and only grow, and a peer
//! nonce that does not grow is refused (replay).

use crypto_box::{PublicKey, SalsaBox, SecretKey, aead::Aead};
use zeroize::Zeroizing;

use crate::{ZmtpError, frame};

/// Our two long-term keys and the server's public key.
pub struct Keys {
    /// The client's long-term public key (C).
    pub public: [u8; 32],
    /// The client's long-term secret key.
    pub secret: Zeroizing<[u8; 32]>,
    /// The server's long-term public key (S), known in advance.
    pub server: [u8; 32],
}

/// A handshake in progress: the transient key pair and the nonce counter.
pub struct Handshake {
    keys: Keys,
    transient: SecretKey,
    nonce: u64,
    /// WELCOME's precomputed box between S' and c', once known.
    session: Option<(SalsaBox, [u8; 96])>,
}

/// An established connection's boxes.
pub struct Session {
    shared: SalsaBox,
    nonce: u64,
    peer_nonce: u64,
}

fn nonce(prefix: &[u8], tail: &[u8]) -> crypto_box::Nonce {
    let mut n = [0u8; 24];
    n[..prefix.len()].copy_from_slice(prefix);
    n[prefix.len()..].copy_from_slice(tail);
    n.into()
}

fn random<const N: usize>() -> Result<[u8; N], ZmtpError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| ZmtpError::Random(e.to_string()))?;
    Ok(bytes)
}

fn crypto(what: &str) -> ZmtpError {
    ZmtpError::Crypto(what.to_string())
}

impl Handshake {
    /// Starts a handshake with a fresh transient key pair.
    ///
    /// # Errors
    /// [`ZmtpError::Random`] if the system has no randomness to give.
    pub fn new(keys: Keys) -> Result<Self, ZmtpError> {
        let transient = SecretKey::from(random::<32>()?);
        Ok(Handshake { keys, transient, nonce: 1, session: None })
    }

    fn next_nonce(&mut self) -> [u8; 8] {
        let n = self.nonce;
        self.nonce += 1;
        n.to_be_bytes()
    }

    /// The HELLO command's body (200 octets).
    pub fn hello(&mut self) -> Vec<u8> {
        let short = self.next_nonce();
        let server = PublicKey::from(self.keys.server);
        let signature = SalsaBox::new(&server, &self.transient)
            .encrypt(&nonce(b"CurveZMQHELLO---", &short), &[0u8; 64][..])
            .unwrap_or_default();
        let mut body = b"\x05HELLO\x01\x00".to_vec();
        body.resize(80, 0); // anti-amplification padding
        body.extend_from_slice(self.transient.public_key().as_bytes());
        body.extend_from_slice(&short);
        body.extend_from_slice(&signature);
        body
    }

    /// Opens WELCOME and returns the INITIATE command's body, carrying
    /// `metadata`.
    ///
    /// # Errors
    /// [`ZmtpError::Crypto`] when WELCOME does not open: the server is not
    /// the one whose public key we hold.
    pub fn initiate(&mut self, welcome: &[u8], metadata: &[u8]) -> Result<Vec<u8>, ZmtpError> {
        if welcome.len() != 168 || !welcome.starts_with(b"\x07WELCOME") {
            return Err(ZmtpError::Protocol("malformed WELCOME".into()));
        }
        let server = PublicKey::from(self.keys.server);
        let opened = Zeroizing::new(
            SalsaBox::new(&server, &self.transient)
                .decrypt(&nonce(b"WELCOME-", &welcome[8..24]), &welcome[24..])
                .map_err(|_| crypto("WELCOME does not open with the server key we hold"))?,
        );
        let server_transient: [u8; 32] = opened[..32].try_into().unwrap_or_default();
        let cookie: [u8; 96] = opened[32..128].try_into().unwrap_or([0; 96]);
        let shared = SalsaBox::new(&PublicKey::from(server_transient), &self.transient);

        let vouch_nonce = random::<16>()?;
        let mut vouched = Zeroizing::new(Vec::with_capacity(64));
        vouched.extend_from_slice(self.transient.public_key().as_bytes());
        vouched.extend_from_slice(&self.keys.server);
        let ours = SecretKey::from(*self.keys.secret);
        let vouch = SalsaBox::new(&PublicKey::from(server_transient), &ours)
            .encrypt(&nonce(b"VOUCH---", &vouch_nonce), &vouched[..])
            .map_err(|_| crypto("sealing the vouch"))?;

        let mut plain = Zeroizing::new(Vec::with_capacity(128 + metadata.len()));
        plain.extend_from_slice(&self.keys.public);
        plain.extend_from_slice(&vouch_nonce);
        plain.extend_from_slice(&vouch);
        plain.extend_from_slice(metadata);
        let short = self.next_nonce();
        let sealed = shared
            .encrypt(&nonce(b"CurveZMQINITIATE", &short), &plain[..])
            .map_err(|_| crypto("sealing INITIATE"))?;
        let mut body = b"\x08INITIATE".to_vec();
        body.extend_from_slice(&cookie);
        body.extend_from_slice(&short);
        body.extend_from_slice(&sealed);
        self.session = Some((shared, cookie));
        Ok(body)
    }

    /// Opens READY: the handshake is done. Returns the session and the
    /// server's metadata.
    ///
    /// # Errors
    /// [`ZmtpError::Protocol`] before INITIATE or for a malformed READY,
    /// [`ZmtpError::Crypto`] when it does not open.
    pub fn ready(self, ready: &[u8]) -> Result<(Session, Vec<u8>), ZmtpError> {
        let Some((shared, _)) = self.session else {
            return Err(ZmtpError::Protocol("READY before WELCOME".into()));
        };
        if ready.len() < 6 + 8 + 16 || !ready.starts_with(b"\x05READY") {
            return Err(ZmtpError::Protocol("malformed READY".into()));
        }
        let peer_nonce = u64::from_be_bytes(ready[6..14].try_into().unwrap_or_default());
        let metadata = shared
            .decrypt(&nonce(b"CurveZMQREADY---", &ready[6..14]), &ready[14..])
            .map_err(|_| crypto("READY does not open"))?;
        Ok((Session { shared, nonce: self.nonce, peer_nonce }, metadata))
    }
}

/// Inner flag bits of a MESSAGE (libzmq's `msg_t` flags).
pub const FLAG_MORE: u8 = 0x01;
/// The MESSAGE carries a ZMTP command (PING, PONG, ...).
pub const FLAG_COMMAND: u8 = 0x02;

impl Session {
    /// A MESSAGE body carrying `data` with the inner `flags`.
    pub fn seal(&mut self, flags: u8, data: &[u8]) -> Vec<u8> {
        let short = self.nonce.to_be_bytes();
        self.nonce += 1;
        let mut plain = Vec::with_capacity(1 + data.len());
        plain.push(flags);
        plain.extend_from_slice(data);
        let sealed = self
            .shared
            .encrypt(&nonce(b"CurveZMQMESSAGEC", &short), &plain[..])
            .unwrap_or_default();
        let mut body = Vec::with_capacity(16 + sealed.len());
        body.extend_from_slice(b"\x07MESSAGE");
        body.extend_from_slice(&short);
        body.extend_from_slice(&sealed);
        body
    }

    /// Opens a MESSAGE from the server: its inner flags and data.
    ///
    /// # Errors
    /// [`ZmtpError::Protocol`] for a malformed or replayed MESSAGE,
    /// [`ZmtpError::Crypto`] when it does not open.
    pub fn open(&mut self, body: &[u8]) -> Result<(u8, Vec<u8>), ZmtpError> {
        if body.len() < 16 + 16 + 1 || !body.starts_with(b"\x07MESSAGE") {
            let name = frame::command(body).map(|(n, _)| String::from_utf8_lossy(n).into_owned());
            return Err(ZmtpError::Protocol(format!(
                "expected MESSAGE, got {}",
                name.unwrap_or_else(|| "an empty frame".into())
            )));
        }
        let short = u64::from_be_bytes(body[8..16].try_into().unwrap_or_default());
        if short <= self.peer_nonce {
            return Err(ZmtpError::Protocol(format!(
                "MESSAGE nonce {short} does not follow {}: replayed or reordered",
                self.peer_nonce
            )));
        }
        let mut plain = self
            .shared
            .decrypt(&nonce(b"CurveZMQMESSAGES", &body[8..16]), &body[16..])
            .map_err(|_| crypto("MESSAGE does not open"))?;
        self.peer_nonce = short;
        let flags = plain.remove(0);
        Ok((flags, plain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The NaCl test vector ("Cryptography in NaCl", section 10): Alice's
    /// secret key, Bob's public key and the nonce seal these 131 octets to
    /// ciphertext that starts with this tag and these octets.
    #[test]
    fn boxes_are_nacl_crypto_box() {
        let alice = SecretKey::from([
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ]);
        let bob = PublicKey::from([
            0xde, 0x9e, 0xdb, 0x7d, 0x7b, 0x7d, 0xc1, 0xb4, 0xd3, 0x5b, 0x61, 0xc2, 0xec, 0xe4,
            0x35, 0x37, 0x3f, 0x83, 0x43, 0xc8, 0x5b, 0x78, 0x67, 0x4d, 0xad, 0xfc, 0x7e, 0x14,
            0x6f, 0x88, 0x2b, 0x4f,
        ]);
        let n: [u8; 24] = [
            0x69, 0x69, 0x6e, 0xe9, 0x55, 0xb6, 0x2b, 0x73, 0xcd, 0x62, 0xbd, 0xa8, 0x75, 0xfc,
            0x73, 0xd6, 0x82, 0x19, 0xe0, 0x03, 0x6b, 0x7a, 0x0b, 0x37,
        ];
        let m: [u8; 131] = [
            0xbe, 0x07, 0x5f, 0xc5, 0x3c, 0x81, 0xf2, 0xd5, 0xcf, 0x14, 0x13, 0x16, 0xeb, 0xeb,
            0x0c, 0x7b, 0x52, 0x28, 0xc5, 0x2a, 0x4c, 0x62, 0xcb, 0xd4, 0x4b, 0x66, 0x84, 0x9b,
            0x64, 0x24, 0x4f, 0xfc, 0xe5, 0xec, 0xba, 0xaf, 0x33, 0xbd, 0x75, 0x1a, 0x1a, 0xc7,
            0x28, 0xd4, 0x5e, 0x6c, 0x61, 0x29, 0x6c, 0xdc, 0x3c, 0x01, 0x23, 0x35, 0x61, 0xf4,
            0x1d, 0xb6, 0x6c, 0xce, 0x31, 0x4a, 0xdb, 0x31, 0x0e, 0x3b, 0xe8, 0x25, 0x0c, 0x46,
            0xf0, 0x6d, 0xce, 0xea, 0x3a, 0x7f, 0xa1, 0x34, 0x80, 0x57, 0xe2, 0xf6, 0x55, 0x6a,
            0xd6, 0xb1, 0x31, 0x8a, 0x02, 0x4a, 0x83, 0x8f, 0x21, 0xaf, 0x1f, 0xde, 0x04, 0x89,
            0x77, 0xeb, 0x48, 0xf5, 0x9f, 0xfd, 0x49, 0x24, 0xca, 0x1c, 0x60, 0x90, 0x2e, 0x52,
            0xf0, 0xa0, 0x89, 0xbc, 0x76, 0x89, 0x70, 0x40, 0xe0, 0x82, 0xf9, 0x37, 0x76, 0x38,
            0x48, 0x64, 0x5e, 0x07, 0x05,
        ];
        let c = SalsaBox::new(&bob, &alice).encrypt(&n.into(), &m[..]).unwrap();
        assert_eq!(c.len(), 16 + 131);
        assert_eq!(
            &c[..20],
            &[
                0xf3, 0xff, 0xc7, 0x70, 0x3f, 0x94, 0x00, 0xe5, 0x2a, 0x7d, 0xfb, 0x4b, 0x3d, 0x33,
                0x05, 0xd9, 0x8e, 0x99, 0x3b, 0x9f
            ]
        );
        assert_eq!(&c[c.len() - 3..], &[0xe3, 0x55, 0xa5]);
    }

    fn keys(server: [u8; 32]) -> Keys {
        Keys { public: [1; 32], secret: Zeroizing::new([2; 32]), server }
    }

    #[test]
    fn hello_has_the_documented_layout() {
        let mut h = Handshake::new(keys([9; 32])).unwrap();
        let hello = h.hello();
        assert_eq!(hello.len(), 200);
        assert_eq!(&hello[..8], b"\x05HELLO\x01\x00");
        assert!(hello[8..80].iter().all(|&b| b == 0));
        assert_eq!(&hello[112..120], &1u64.to_be_bytes());
    }

    #[test]
    fn a_welcome_from_another_server_does_not_open() {
        let mut h = Handshake::new(keys([9; 32])).unwrap();
        let mut welcome = b"\x07WELCOME".to_vec();
        welcome.resize(168, 5);
        assert!(matches!(h.initiate(&welcome, &[]), Err(ZmtpError::Crypto(_))));
        assert!(matches!(h.initiate(&welcome[..100], &[]), Err(ZmtpError::Protocol(_))));
    }
}
