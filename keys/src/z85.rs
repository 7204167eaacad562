//! Z85, ZeroMQ's base-85 encoding (RFC 32): how CURVE keys are written as
//! 40 printable characters in certificates and logs.

const ALPHABET: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Encodes bytes whose length is a multiple of 4.
///
/// Returns `None` for other lengths: Z85 has no padding.
pub fn encode(data: &[u8]) -> Option<String> {
    if !data.len().is_multiple_of(4) {
        return None;
    }
    let mut out = String::with_capacity(data.len() / 4 * 5);
    for chunk in data.chunks_exact(4) {
        let mut value = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let mut digits = [0u8; 5];
        for digit in digits.iter_mut().rev() {
            *digit = ALPHABET[(value % 85) as usize];
            value /= 85;
        }
        out.extend(digits.iter().map(|&d| d as char));
    }
    Some(out)
}

/// Decodes Z85 text whose length is a multiple of 5.
///
/// Returns `None` for other lengths, characters outside the alphabet, or a
/// group whose value overflows 32 bits.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(5) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 5 * 4);
    for chunk in bytes.chunks_exact(5) {
        let mut value: u64 = 0;
        for &c in chunk {
            let digit = ALPHABET.iter().position(|&a| a == c)?;
            value = value * 85 + digit as u64;
        }
        let value = u32::try_from(value).ok()?;
        out.extend_from_slice(&value.to_be_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc32_test_vector() {
        let data = [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B];
        assert_eq!(encode(&data).as_deref(), Some("HelloWorld"));
        assert_eq!(decode("HelloWorld"), Some(data.to_vec()));
    }

    #[test]
    fn rejects_bad_lengths_characters_and_overflow() {
        assert_eq!(encode(&[1, 2, 3]), None);
        assert_eq!(decode("Hell"), None);
        assert_eq!(decode("Hell\""), None, "quote is not in the alphabet");
        assert_eq!(decode("#####"), None, "85^5-1 overflows 32 bits");
    }

    #[test]
    fn round_trips_all_byte_values() {
        let data: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&data).unwrap()), Some(data));
    }
}
