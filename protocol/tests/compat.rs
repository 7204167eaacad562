//! Frozen bytes of every version-1 message. If this fails, the change breaks
//! every deployed agent or collector of that version: bump
//! `PROTOCOL_VERSION` and add a new `tests/data/vN/` instead of editing
//! these files. `UPDATE_GOLDEN=1 cargo test -p curvemon-protocol --test compat`
//! writes files that do not exist yet; it never rewrites existing ones.

mod common;

use std::path::PathBuf;

use curvemon_protocol::{decode, encode};

#[test]
fn version_1_bytes_are_stable() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for (name, message) in common::examples() {
        let path = dir.join(format!("{name}.bin"));
        if update && !path.exists() {
            std::fs::write(&path, encode(&message)).unwrap();
        }
        let golden = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (create it with UPDATE_GOLDEN=1)", path.display()));
        assert_eq!(decode(&golden).unwrap(), message, "{name}: old bytes decode differently");
        assert_eq!(encode(&message), golden, "{name}: encoding changed");
    }
}
