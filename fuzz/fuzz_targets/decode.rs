//! Any bytes given to the protocol decoder: it must return, never panic,
//! and whatever it accepts must encode back to bytes it accepts again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    if let Ok(message) = curvemon_protocol::decode(frame) {
        let again = curvemon_protocol::encode(&message);
        assert!(curvemon_protocol::decode(&again).is_ok(), "re-encoded message does not decode");
    }
});
