//! The ZMTP 3 greeting (RFC 23): 64 octets each way before anything else.

use crate::ZmtpError;

/// Octets in a greeting.
pub const LEN: usize = 64;

/// Ours: signature, version 3.1, mechanism CURVE, as-server 0, filler.
pub fn client() -> [u8; LEN] {
    let mut g = [0u8; LEN];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3;
    g[11] = 1;
    g[12..17].copy_from_slice(b"CURVE");
    g
}

/// Checks the server's greeting: a ZMTP 3 peer offering CURVE.
///
/// # Errors
/// [`ZmtpError::NotZmtp`] for anything that is not a ZMTP 3 greeting,
/// [`ZmtpError::Mechanism`] when the server offers another mechanism.
pub fn check(theirs: &[u8]) -> Result<(), ZmtpError> {
    if theirs.len() < LEN || theirs[0] != 0xFF || theirs[9] & 0x01 != 0x01 {
        return Err(ZmtpError::NotZmtp);
    }
    if theirs[10] < 3 {
        return Err(ZmtpError::Protocol(format!("the server speaks ZMTP {}.x, not 3", theirs[10])));
    }
    let mechanism = &theirs[12..32];
    let name = String::from_utf8_lossy(mechanism).trim_end_matches('\0').to_string();
    if name != "CURVE" {
        return Err(ZmtpError::Mechanism(name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_is_accepted_and_others_are_named() {
        assert!(check(&client()).is_ok());
        let mut null = client();
        null[12..32].copy_from_slice(b"NULL\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        assert!(matches!(check(&null), Err(ZmtpError::Mechanism(m)) if m == "NULL"));
        assert!(matches!(
            check(b"HTTP/1.1 400 Bad Request\r\n\r\n0123456789012345678901234567890123"),
            Err(ZmtpError::NotZmtp)
        ));
    }
}
