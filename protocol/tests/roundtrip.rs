//! Every message survives encode → decode, and no byte string makes the
//! decoder panic or allocate past the frame limit.

mod common;

use curvemon_protocol::{
    DecodeError, MAGIC, MAX_FRAME_BYTES, PROTOCOL_VERSION, codec, decode, encode,
};

#[test]
fn every_message_round_trips() {
    for (name, message) in common::examples() {
        let frame = encode(&message);
        assert_eq!(&frame[..4], &MAGIC, "{name}");
        assert_eq!(decode(&frame).unwrap(), message, "{name}");
    }
}

#[test]
fn header_errors_are_distinguished() {
    assert_eq!(decode(b"CMO"), Err(DecodeError::Truncated { len: 3, min: 6 }));
    assert_eq!(decode(b"HTTP/1.1 200"), Err(DecodeError::BadMagic { found: *b"HTTP" }));
    let (_, hello) = &common::examples()[0];
    let other = codec::encode_with_version(hello, 7);
    assert_eq!(
        decode(&other),
        Err(DecodeError::UnsupportedVersion { theirs: 7, ours: PROTOCOL_VERSION })
    );
    assert_eq!(codec::peek_version(&other), Ok(7));
    let huge = vec![0u8; MAX_FRAME_BYTES + 1];
    assert_eq!(
        decode(&huge),
        Err(DecodeError::TooLarge { len: MAX_FRAME_BYTES + 1, max: MAX_FRAME_BYTES })
    );
}

#[test]
fn body_errors_are_malformed_not_panics() {
    let mut frame = encode(&common::examples()[3].1);
    frame.push(0);
    assert!(matches!(decode(&frame), Err(DecodeError::Malformed(m)) if m.contains("trailing")));
    // A variant index past the end of the enum.
    let mut unknown = MAGIC.to_vec();
    unknown.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    unknown.push(200);
    assert!(matches!(decode(&unknown), Err(DecodeError::Malformed(_))));
    // A vector length prefix claiming 2^63 elements must not allocate.
    let mut bomb = MAGIC.to_vec();
    bomb.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    bomb.push(3); // Metrics
    bomb.extend_from_slice(&[1, 1, 1]); // seq, taken_at_ms, schema_revision
    bomb.push(253); // varint: u64 follows
    bomb.extend_from_slice(&(1u64 << 63).to_le_bytes());
    assert!(matches!(decode(&bomb), Err(DecodeError::Malformed(_))));
}

#[test]
fn truncations_and_bit_flips_never_panic() {
    // Deterministic xorshift so a failure reproduces.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (_, message) in common::examples() {
        let frame = encode(&message);
        for cut in 0..frame.len() {
            let _ = decode(&frame[..cut]);
        }
        for _ in 0..2000 {
            let mut mutated = frame.clone();
            let flips = 1 + next() % 4;
            for _ in 0..flips {
                let at = 6 + (next() as usize) % (mutated.len() - 6).max(1);
                if at < mutated.len() {
                    mutated[at] ^= 1 << (next() % 8);
                }
            }
            let _ = decode(&mutated);
        }
    }
}

#[test]
fn every_supported_version_decodes_and_newer_messages_need_newer_frames() {
    use curvemon_protocol::{MIN_VERSION, decode_versioned};
    for (name, message) in common::examples() {
        for version in MIN_VERSION..=PROTOCOL_VERSION {
            let frame = codec::encode_with_version(&message, version);
            let decoded = decode_versioned(&frame);
            if message.since() <= version {
                assert_eq!(decoded, Ok((version, message.clone())), "{name} in v{version}");
            } else {
                assert!(
                    matches!(&decoded, Err(DecodeError::Malformed(m)) if m.contains("version")),
                    "{name} in v{version}: {decoded:?}"
                );
            }
        }
    }
    assert!(matches!(
        decode(&codec::encode_with_version(&common::examples()[0].1, 0)),
        Err(DecodeError::UnsupportedVersion { theirs: 0, .. })
    ));
}
