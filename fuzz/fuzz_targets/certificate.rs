//! Any text given to the certificate parser and the key decoder: they must
//! return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(entries) = curvemon_keys::zpl::parse(text) {
        for entry in entries {
            if let Some(value) = entry.value {
                let _ = value.parse::<curvemon_keys::PublicKey>();
            }
        }
    }
});
