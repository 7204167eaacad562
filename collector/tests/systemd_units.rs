//! The unit files in systemd/ are valid (systemd-analyze verify, with the
//! real binaries in ExecStart and the generated man pages their
//! Documentation= names) and stay hardened (offline security score).

mod common;

use std::{path::Path, process::Command};

fn units_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd"))
}

/// Copies a unit into `dir` with ExecStart pointing at the built binary.
fn install(dir: &Path, unit: &str, installed: &str, built: &Path) {
    let text = std::fs::read_to_string(units_dir().join(unit)).unwrap();
    assert!(text.contains(installed), "{unit} runs {installed}");
    std::fs::write(dir.join(unit), text.replace(installed, built.to_str().unwrap())).unwrap();
}

/// Runs systemd-analyze in `dir`, whose `man/` holds the generated pages
/// (verify checks that each unit's `man:` documentation exists).
fn analyze(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .current_dir(dir)
        .env("MANPATH", dir.join("man"))
        .output()
        .expect(
            "systemd-analyze must be installed (Debian package systemd); scripts/test installs it",
        );
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn units_verify_and_stay_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) =
        common::run(&common::dist_bin(), &[dir.path().join("man").to_str().unwrap()]);
    assert!(ok, "dist: {err}");
    install(dir.path(), "curvemon-agent.service", "/usr/bin/curvemon-agent", &common::agent_bin());
    install(
        dir.path(),
        "curvemon-collector.service",
        "/usr/bin/curvemon-collector",
        &common::collector_bin(),
    );
    let (ok, text) =
        analyze(dir.path(), &["verify", "curvemon-agent.service", "curvemon-collector.service"]);
    assert!(ok && text.trim().is_empty(), "systemd-analyze verify:\n{text}");

    for unit in ["curvemon-agent.service", "curvemon-collector.service"] {
        let (_, text) = analyze(dir.path(), &["security", "--offline=true", unit]);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no exposure score for {unit}:\n{text}"));
        assert!(score <= 2.0, "{unit} exposure {score} > 2.0:\n{text}");
    }

    // Both tell systemd when they are ready and feed its watchdog
    // (notify.rs tests the datagrams).
    for unit in ["curvemon-agent.service", "curvemon-collector.service"] {
        let text = std::fs::read_to_string(units_dir().join(unit)).unwrap();
        for line in ["Type=notify", "NotifyAccess=main", "WatchdogSec=30s"] {
            assert!(text.lines().any(|l| l.trim() == line), "{unit} lacks {line}");
        }
    }

    // ProcSubset=pid would hide /proc/stat and /proc/meminfo from the agent.
    let agent = std::fs::read_to_string(units_dir().join("curvemon-agent.service")).unwrap();
    assert!(
        !agent.lines().any(|l| l.trim_start().starts_with("ProcSubset=")),
        "agent must see /proc/stat"
    );
    // ProtectProc=invisible or noaccess would hide other users' processes
    // from [[process]] groups (namespaces.rs tests the agent under it).
    let protect = agent.lines().filter_map(|l| l.trim_start().strip_prefix("ProtectProc="));
    for value in protect {
        assert_eq!(value.trim(), "default", "ProtectProc={value}");
    }
}
