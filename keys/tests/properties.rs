//! No text makes the certificate parser or the key decoder panic, and Z85
//! round-trips every key.

use curvemon_keys::{PublicKey, z85, zpl};
use proptest::prelude::*;

proptest! {
    #[test]
    fn zpl_parser_never_panics(text in "(\\PC|\n|\t| ){0,400}") {
        let _ = zpl::parse(&text);
    }

    #[test]
    fn certificate_like_text_never_panics(
        indent in 0usize..9,
        name in "[a-z$@._+/-]{0,12}",
        value in "\\PC{0,50}",
        quote in prop::sample::select(vec!["\"", "'", ""]),
    ) {
        let text = format!("curve\n{}{name} = {quote}{value}{quote}\n", " ".repeat(indent));
        if let Ok(entries) = zpl::parse(&text) {
            for entry in entries {
                if let Some(value) = entry.value {
                    let _ = value.parse::<PublicKey>();
                }
            }
        }
    }

    #[test]
    fn z85_round_trips_keys(bytes in prop::array::uniform32(any::<u8>())) {
        let key = PublicKey::from_bytes(bytes);
        prop_assert_eq!(key.to_z85().parse::<PublicKey>().unwrap(), key);
        prop_assert_eq!(z85::decode(&key.to_z85()).unwrap(), bytes.to_vec());
    }

    #[test]
    fn z85_decode_never_panics(text in "\\PC{0,60}") {
        let _ = z85::decode(&text);
    }
}
