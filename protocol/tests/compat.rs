//! Frozen bytes of every message of every version. If this fails, the
//! change breaks every deployed agent or collector of that version: bump
//! `PROTOCOL_VERSION` and add a new `tests/data/vN/` instead of editing
//! these files. `UPDATE_GOLDEN=1 cargo test -p curvemon-protocol --test compat`
//! writes files that do not exist yet; it never rewrites existing ones.

mod common;

use std::path::PathBuf;

use curvemon_protocol::{PROTOCOL_VERSION, codec::encode_with_version, decode_versioned};

/// Every message a version has, in that version's frames.
fn check(version: u16) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/v{version}"));
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut checked = 0;
    for (name, message) in common::examples().into_iter().filter(|(_, m)| m.since() <= version) {
        let path = dir.join(format!("{name}.bin"));
        if update && !path.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, encode_with_version(&message, version)).unwrap();
        }
        let golden = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (create it with UPDATE_GOLDEN=1)", path.display()));
        assert_eq!(
            decode_versioned(&golden).unwrap(),
            (version, message.clone()),
            "v{version} {name}: old bytes decode differently"
        );
        assert_eq!(
            encode_with_version(&message, version),
            golden,
            "v{version} {name}: encoding changed"
        );
        checked += 1;
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, checked, "v{version}: a golden file without an example");
}

#[test]
fn version_1_bytes_are_stable() {
    check(1);
}

#[test]
fn version_2_bytes_are_stable() {
    check(2);
}

#[test]
fn version_3_bytes_are_stable() {
    check(3);
}

#[test]
fn version_4_bytes_are_stable() {
    check(4);
    assert_eq!(PROTOCOL_VERSION, 4, "a new version needs its own golden directory and test");
}
