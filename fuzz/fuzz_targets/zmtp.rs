//! Any bytes as a server's side of a connection, before it is
//! authenticated: the agent's greeting check, frame decoder, command and
//! metadata parsers and WELCOME handling must return, never panic.
#![no_main]

use curvemon_zmtp::{Keys, curve::Handshake, frame, greeting};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (hello, rest) = data.split_at(data.len().min(greeting::LEN));
    let _ = greeting::check(hello);
    let mut buf = rest.to_vec();
    let keys = Keys { public: [1; 32], secret: [2; 32].into(), server: [3; 32] };
    let Ok(mut handshake) = Handshake::new(keys) else { return };
    while let Ok(Some(frame)) = frame::decode(&mut buf, 1 << 20) {
        if let Some((_, data)) = frame::command(&frame.body) {
            let _ = frame::parse_properties(data);
        }
        let _ = handshake.initiate(&frame.body, &[]);
    }
});
