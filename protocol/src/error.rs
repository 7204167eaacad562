//! Why a frame could not be decoded. Each expected case has its own variant so
//! that callers can count and log them apart (a peer of another version is an
//! operational fact, a malformed body is an attack or a bug).

use thiserror::Error;

/// A frame that is not a valid message of this protocol version.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame is shorter than the six-byte header.
    #[error("frame of {len} bytes is shorter than the {min}-byte header")]
    Truncated {
        /// Length of the frame received.
        len: usize,
        /// Length of the header.
        min: usize,
    },
    /// The frame does not start with `CMON`: not a curvemon peer.
    #[error("frame does not start with the curvemon magic (got {found:02x?})")]
    BadMagic {
        /// The first four bytes received.
        found: [u8; 4],
    },
    /// The peer speaks another protocol version; the body is not decoded.
    #[error("peer speaks protocol version {theirs}, this side speaks {ours}")]
    UnsupportedVersion {
        /// The version in the frame's header.
        theirs: u16,
        /// The version this build speaks.
        ours: u16,
    },
    /// The frame is larger than [`crate::MAX_FRAME_BYTES`].
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Length of the frame received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The header is fine but the body is not a valid message.
    #[error("malformed message body: {0}")]
    Malformed(String),
}
