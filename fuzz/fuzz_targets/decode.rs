//! Any bytes given to the protocol decoder: it must return, never panic,
//! and whatever it accepts must encode back to bytes it accepts again. A
//! hello or model it accepts goes through the collector's checks
//! (`validate`), which must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    if let Ok(message) = curvemon_protocol::decode(frame) {
        match &message {
            curvemon_protocol::Message::Hello(hello) => {
                let _ = curvemon_protocol::validate::hello(hello);
            }
            curvemon_protocol::Message::Model(model) => {
                let _ = curvemon_protocol::validate::model(model);
            }
            _ => {}
        }
        let again = curvemon_protocol::encode(&message);
        assert!(curvemon_protocol::decode(&again).is_ok(), "re-encoded message does not decode");
    }
});
