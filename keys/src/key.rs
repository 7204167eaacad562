//! Key types. A [`SecretKey`] never prints itself and is wiped from memory
//! when dropped; a [`PublicKey`] prints as Z85 (the form operators compare
//! with certificate files) and has a hex form that is safe in URLs.

use std::{fmt, str::FromStr};

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{error::KeyError, z85};

/// A CURVE public key (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

/// A CURVE secret key (32 bytes). `Debug` and `Display` are redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

/// A matching public and secret key.
#[derive(Clone, Debug)]
pub struct KeyPair {
    /// The part that may be shared.
    pub public: PublicKey,
    /// The part that must not leave the host.
    pub secret: SecretKey,
}

impl PublicKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PublicKey(bytes)
    }

    /// Raw key bytes, as libzmq's socket options take them.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 40-character Z85 text, as in certificates and ZAP's `User-Id`.
    pub fn to_z85(&self) -> String {
        // 32 is a multiple of 4, so encoding cannot fail.
        z85::encode(&self.0).unwrap_or_default()
    }

    /// 64 lowercase hex digits: safe in URL paths and file names, unlike Z85
    /// (whose alphabet has `/`, `?`, `#` and `&`).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key of [`PublicKey::to_hex`]'s text (lowercase, 64 digits).
    pub fn from_hex(text: &str) -> Option<PublicKey> {
        let digits = text.as_bytes();
        if digits.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hex = |d: u8| match d {
                b'0'..=b'9' => Some(d - b'0'),
                b'a'..=b'f' => Some(d - b'a' + 10),
                _ => None,
            };
            key[i] = hex(pair[0])? << 4 | hex(pair[1])?;
        }
        Some(PublicKey(key))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_z85())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_z85())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        decode_key(text).map(PublicKey)
    }
}

impl SecretKey {
    /// Raw key bytes, as libzmq's socket options take them.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Z85 text, for writing the secret certificate file only.
    pub(crate) fn to_z85(&self) -> String {
        z85::encode(&self.0).unwrap_or_default()
    }

    pub(crate) fn from_z85(text: &str) -> Result<Self, KeyError> {
        decode_key(text).map(SecretKey)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl KeyPair {
    /// A fresh key pair from the operating system's randomness.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the OS cannot provide random bytes.
    pub fn generate() -> Result<Self, KeyError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
        let pair = Self::from_secret(SecretKey(secret));
        secret.zeroize();
        Ok(pair)
    }

    /// Derives the public key from a secret key, as libsodium's
    /// `crypto_scalarmult_base` does for CURVE.
    pub fn from_secret(secret: SecretKey) -> Self {
        let public = x25519_dalek::x25519(secret.0, x25519_dalek::X25519_BASEPOINT_BYTES);
        KeyPair { public: PublicKey(public), secret }
    }
}

fn decode_key(text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = z85::decode(text).ok_or_else(|| {
        KeyError::BadZ85(format!(
            "expected 40 characters of the Z85 alphabet, got {:?}",
            text.len()
        ))
    })?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| KeyError::BadZ85(format!("expected 40 characters, got {}", text.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_the_rfc26_test_public_key() {
        // The example key pair from ZeroMQ RFC 26 (CurveZMQ), as used in
        // libzmq's tests: secret "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs".
        let secret = SecretKey::from_z85("D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs").unwrap();
        let pair = KeyPair::from_secret(secret);
        assert_eq!(pair.public.to_z85(), "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID");
    }

    #[test]
    fn secret_is_redacted_and_public_round_trips() {
        let pair = KeyPair::generate().unwrap();
        assert_eq!(format!("{:?}", pair.secret), "SecretKey(<redacted>)");
        assert!(!format!("{pair:?}").contains(&pair.secret.to_z85()));
        let text = pair.public.to_string();
        assert_eq!(text.len(), 40);
        assert_eq!(text.parse::<PublicKey>().unwrap(), pair.public);
        assert_eq!(pair.public.to_hex().len(), 64);
        assert_eq!(PublicKey::from_hex(&pair.public.to_hex()), Some(pair.public));
        let mut upper = pair.public.to_hex();
        upper.replace_range(0..1, "G");
        assert_eq!(PublicKey::from_hex(&upper), None);
        assert_eq!(PublicKey::from_hex("ab"), None);
    }

    #[test]
    fn rejects_wrong_length_keys() {
        assert!("HelloWorld".parse::<PublicKey>().is_err());
        assert!("".parse::<PublicKey>().is_err());
    }
}
