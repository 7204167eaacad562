//! ZMTP 3 frames (RFC 23): a flags octet (MORE, LONG, COMMAND), a size of
//! one octet or, with LONG, eight octets in network order, then the body.

use crate::ZmtpError;

const MORE: u8 = 0x01;
const LONG: u8 = 0x02;
const COMMAND: u8 = 0x04;

/// One frame as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// A command (greeting-level handshake traffic) rather than message data.
    pub command: bool,
    /// More frames of the same message follow.
    pub more: bool,
    /// The frame's body.
    pub body: Vec<u8>,
}

/// Appends a frame holding `body` to `out`.
pub fn encode(command: bool, body: &[u8], out: &mut Vec<u8>) {
    let flags = if command { COMMAND } else { 0 };
    if let Ok(short) = u8::try_from(body.len()) {
        out.extend_from_slice(&[flags, short]);
    } else {
        out.push(flags | LONG);
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    }
    out.extend_from_slice(body);
}

/// Takes one whole frame off the front of `buf`: `Ok(None)` until it has
/// all arrived. A frame larger than `max_body` is an error as soon as its
/// size is known, before it is buffered.
///
/// # Errors
/// [`ZmtpError::Protocol`] for reserved flag bits or an oversized frame.
pub fn decode(buf: &mut Vec<u8>, max_body: usize) -> Result<Option<Frame>, ZmtpError> {
    let Some(&flags) = buf.first() else { return Ok(None) };
    if flags & !(MORE | LONG | COMMAND) != 0 {
        return Err(ZmtpError::Protocol(format!("frame flags {flags:#04x} use reserved bits")));
    }
    let (header, size) = if flags & LONG == 0 {
        match buf.get(1) {
            Some(&size) => (2, u64::from(size)),
            None => return Ok(None),
        }
    } else {
        match buf.get(1..9) {
            Some(bytes) => (9, u64::from_be_bytes(bytes.try_into().unwrap_or_default())),
            None => return Ok(None),
        }
    };
    let size = usize::try_from(size).ok().filter(|&s| s <= max_body).ok_or_else(|| {
        ZmtpError::Protocol(format!("a frame of {size} bytes is over the {max_body}-byte limit"))
    })?;
    if buf.len() < header + size {
        return Ok(None);
    }
    let body = buf[header..header + size].to_vec();
    buf.drain(..header + size);
    Ok(Some(Frame { command: flags & COMMAND != 0, more: flags & MORE != 0, body }))
}

/// A command's name and data: a name-length octet, the name, the rest.
pub fn command(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = body.split_first()?;
    let len = usize::from(len);
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Encodes metadata properties (RFC 23): a name-length octet, the name, a
/// four-octet value length in network order, the value.
pub fn properties(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&name.as_bytes()[..name.len().min(255)]);
        out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// Decodes metadata properties; `None` if they are malformed.
pub fn parse_properties(mut data: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (name, rest) = command(data)?;
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let value = rest.get(4..4 + len)?;
        out.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
        data = &rest[4 + len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_frames_round_trip_in_pieces() {
        let mut wire = Vec::new();
        encode(true, b"\x05HELLO", &mut wire);
        encode(false, &[7; 300], &mut wire);
        assert_eq!(&wire[..2], &[0x04, 6]);
        assert_eq!(&wire[8..17], &[0x02, 0, 0, 0, 0, 0, 0, 1, 44]);
        let mut buf = Vec::new();
        let mut frames = Vec::new();
        for byte in wire {
            buf.push(byte);
            while let Some(frame) = decode(&mut buf, 1000).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames[0], Frame { command: true, more: false, body: b"\x05HELLO".to_vec() });
        assert_eq!(frames[1], Frame { command: false, more: false, body: vec![7; 300] });
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_and_reserved_frames_are_refused_before_their_body() {
        let mut buf = vec![0x02, 0, 0, 0, 0, 0, 0x20, 0, 0];
        assert!(matches!(decode(&mut buf, 1 << 20), Err(ZmtpError::Protocol(_))));
        let mut buf = vec![0x80, 0];
        assert!(matches!(decode(&mut buf, 10), Err(ZmtpError::Protocol(_))));
    }

    #[test]
    fn properties_round_trip_and_truncation_is_caught() {
        let encoded = properties(&[("Socket-Type", b"DEALER"), ("Identity", b"")]);
        let parsed = parse_properties(&encoded).unwrap();
        assert_eq!(
            parsed,
            vec![("Socket-Type".into(), b"DEALER".to_vec()), ("Identity".into(), vec![])]
        );
        assert_eq!(parse_properties(&encoded[..encoded.len() - 3]), None);
    }
}
