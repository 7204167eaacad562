//! The only place where messages become bytes and bytes become messages.
//!
//! Frame = `MAGIC` (4 bytes) ‖ version (u16, big-endian) ‖ body, where body is
//! the [`Message`] in bincode 2's standard configuration (little-endian,
//! variable-length integers) with the serde data model. Changing the body
//! encoding changes this file and nothing else; the golden files in
//! `tests/data/` say whether it stayed compatible.

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};

use crate::{error::DecodeError, message::Message};

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"CMON";

/// The newest protocol version this build speaks. Bump it on any change
/// that old peers cannot decode; `docs/protocol.md` lists what each version
/// added.
pub const PROTOCOL_VERSION: u16 = 4;

/// The oldest version this build still speaks: a collector accepts agents
/// of every version from here to [`PROTOCOL_VERSION`], and answers each in
/// its own version.
pub const MIN_VERSION: u16 = 1;

/// Largest frame either side accepts. A model of a host with a few thousand
/// series is well under 1 MiB; the collector also sets `ZMQ_MAXMSGSIZE` to
/// this so that larger frames are refused by libzmq before they are buffered.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

const HEADER_LEN: usize = MAGIC.len() + 2;

/// bincode's own allocation limit, so a forged length prefix inside the body
/// cannot make the decoder reserve more than one frame's worth of memory.
type WireConfig = Configuration<LittleEndian, Varint, Limit<MAX_FRAME_BYTES>>;

fn wire_config() -> WireConfig {
    config::standard().with_limit::<MAX_FRAME_BYTES>()
}

/// Encodes a message into one frame of the newest version.
///
/// Encoding our own in-memory types cannot fail short of a bug in bincode,
/// so this returns the bytes directly; a message whose frame would exceed
/// [`MAX_FRAME_BYTES`] is still returned, and the receiver refuses it.
pub fn encode(message: &Message) -> Vec<u8> {
    encode_with_version(message, PROTOCOL_VERSION)
}

/// Encodes in the version the peer speaks (its header says `version`). The
/// caller sends only messages that version has ([`Message::since`]).
pub fn encode_with_version(message: &Message, version: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&version.to_be_bytes());
    // Writing into a Vec has no I/O error; the serde data model of our types
    // has no unsupported constructs (no untagged enums, no maps with
    // non-string keys), so the error arm is unreachable in practice.
    match bincode::serde::encode_to_vec(message, wire_config()) {
        Ok(body) => frame.extend_from_slice(&body),
        Err(err) => unreachable!("bincode cannot encode a curvemon message: {err}"),
    }
    frame
}

/// Reads the header only: the version a frame claims, or why it has none.
/// The collector uses this to answer a peer of another version with a
/// [`crate::Reject`] that names both versions.
pub fn peek_version(frame: &[u8]) -> Result<u16, DecodeError> {
    if frame.len() < HEADER_LEN {
        return Err(DecodeError::Truncated { len: frame.len(), min: HEADER_LEN });
    }
    let mut magic = [0u8; 4];
    magic.copy_from_slice(&frame[..4]);
    if magic != MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    Ok(u16::from_be_bytes([frame[4], frame[5]]))
}

/// Decodes one frame of any version this build speaks, checking the
/// header before the body.
///
/// # Errors
/// Every way a frame can be wrong has its own [`DecodeError`] variant; no
/// input panics (see the property test in `tests/roundtrip.rs`).
pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
    decode_versioned(frame).map(|(_, message)| message)
}

/// [`decode`], also returning the frame's version (the one to answer in).
///
/// # Errors
/// As [`decode`]; a message newer than its frame's version is malformed.
pub fn decode_versioned(frame: &[u8]) -> Result<(u16, Message), DecodeError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge { len: frame.len(), max: MAX_FRAME_BYTES });
    }
    let version = peek_version(frame)?;
    if !(MIN_VERSION..=PROTOCOL_VERSION).contains(&version) {
        return Err(DecodeError::UnsupportedVersion { theirs: version, ours: PROTOCOL_VERSION });
    }
    let body = &frame[HEADER_LEN..];
    let (message, used) = bincode::serde::decode_from_slice::<Message, _>(body, wire_config())
        .map_err(|err| DecodeError::Malformed(err.to_string()))?;
    if used != body.len() {
        return Err(DecodeError::Malformed(format!(
            "{} trailing bytes after the message",
            body.len() - used
        )));
    }
    if message.since() > version {
        return Err(DecodeError::Malformed(format!(
            "a {} message (version {}) in a version {version} frame",
            message.kind(),
            message.since()
        )));
    }
    Ok((version, message))
}
