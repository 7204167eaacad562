//! The agent on the real /proc in situations a test host can only make in
//! a private mount namespace: hundreds of mounts (a file of records well
//! over one page), and a procfs that hides other users' processes (what
//! systemd's ProtectProc=invisible does), with the agent running as an
//! unprivileged user. These tests need root, as CI has.

mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{Fleet, Proc, agent_bin, http_get, parse_exposition, wait_for};

const LIMIT: Duration = Duration::from_secs(30);

/// Runs the agent through `sh -c "<setup> && exec agent ..."` in a private
/// mount namespace, as `uid` when given (setpriv drops to it after the
/// setup, which needs root).
fn agent_in_namespace(
    fleet: &Fleet,
    name: &str,
    keys: &Path,
    extra: &[&str],
    setup: &str,
    uid: Option<u32>,
) -> Proc {
    let drop = uid.map_or_else(String::new, |u| {
        format!("setpriv --reuid={u} --regid={u} --clear-groups --inh-caps=-all ")
    });
    let script = format!(
        "{setup} && exec {drop}{} --keys {} --name {name} {} {}",
        agent_bin().display(),
        keys.display(),
        extra.join(" "),
        fleet.endpoint()
    );
    Proc::spawn(
        Path::new("/usr/bin/unshare"),
        &["--mount", "--propagation", "private", "sh", "-c", &script],
        fleet.path(&format!("agent-{name}.log")),
        &format!("agent {name}"),
    )
}

fn metrics(fleet: &Fleet) -> std::collections::HashMap<common::SeriesKey, f64> {
    parse_exposition(&http_get(fleet.http_port, "/metrics").map(|(_, t)| t).unwrap_or_default())
}

/// An agent in a namespace with 300 extra mounts reports every one of
/// them: /proc/self/mountinfo is then about 40 KiB, handed over a page of
/// mounts per read.
#[test]
fn every_mount_of_a_host_with_300_mounts_is_reported() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("many-mounts", true);
    let _collector = fleet.start_collector(&[], "collector.log");
    let base = fleet.path("mnt");
    std::fs::create_dir_all(&base).unwrap();
    let setup = format!(
        "for i in $(seq 300); do mkdir -p {b}/m$i && mount -t tmpfs -o size=1m vol$i {b}/m$i || exit 1; done",
        b = base.display()
    );
    let agent = agent_in_namespace(&fleet, "many-mounts", &keys, &[], &setup, None);
    let seen = wait_for("300 mounts in /metrics", LIMIT, || {
        let mounts: std::collections::HashSet<String> = metrics(&fleet)
            .into_keys()
            .filter(|(n, l)| {
                n == "node_filesystem_size_bytes"
                    && l.get("host").is_some_and(|h| h == "many-mounts")
            })
            .filter_map(|(_, l)| l.get("mountpoint").cloned())
            .filter(|m| m.starts_with(&base.display().to_string()))
            .collect();
        (mounts.len() >= 300 || agent.log().contains("ERROR")).then_some(mounts)
    });
    for i in 1..=300 {
        let mount = format!("{}/m{i}", base.display());
        assert!(seen.contains(&mount), "{mount} missing; {} of 300 seen", seen.len());
    }
}

/// A process of root that the `[[process]]` group of test `tag` matches
/// (and no other test's, as tests run in parallel).
fn sleeper(tag: u32) -> Child {
    Command::new("sleep").arg(format!("600.{tag}")).stdin(Stdio::null()).spawn().unwrap()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fleet whose agent key directory and config the unprivileged user
/// `nobody` can read: the agent's key is its own, as on a real host.
fn fleet_for_nobody(name: &str, tag: u32) -> (Fleet, std::path::PathBuf, std::path::PathBuf) {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys(name, true);
    std::fs::set_permissions(fleet.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let status = Command::new("chown").args(["-R", "65534:65534"]).arg(&keys).status().unwrap();
    assert!(status.success(), "chown (this test needs root, as CI has)");
    let config = fleet.path("agent.toml");
    let group = format!("[[process]]\nname = \"sleeper\"\ncmdline = '^sleep 600\\.{tag}$'\n");
    std::fs::write(&config, group).unwrap();
    (fleet, keys, config)
}

fn group_value(fleet: &Fleet, host: &str, name: &str) -> Option<f64> {
    metrics(fleet).into_iter().find_map(|((n, l), v)| {
        (n == name
            && l.get("host").is_some_and(|h| h == host)
            && l.get("groupname").is_some_and(|g| g == "sleeper"))
        .then_some(v)
    })
}

/// As `nobody` on a procfs mounted with hidepid=invisible, root's process
/// cannot be seen: the agent says so once, and why, and the group counts 0.
#[test]
fn hidden_processes_of_other_users_are_reported_once_with_the_reason() {
    let (fleet, keys, config) = fleet_for_nobody("hidepid", 4242);
    let _sleeper = Killed(sleeper(4242));
    let _collector = fleet.start_collector(&[], "collector.log");
    let proc_dir = fleet.path("proc-hidepid");
    std::fs::create_dir_all(&proc_dir).unwrap();
    let setup = format!("mount -t proc -o hidepid=invisible proc {}", proc_dir.display());
    let extra = ["--config", config.to_str().unwrap(), "--proc-root", proc_dir.to_str().unwrap()];
    let agent = agent_in_namespace(&fleet, "hidepid", &keys, &extra, &setup, Some(65534));
    let procs = wait_for("the group's process count", LIMIT, || {
        group_value(&fleet, "hidepid", "namedprocess_namegroup_num_procs")
    });
    assert_eq!(procs, 0.0, "root's sleep is invisible to nobody under hidepid");
    agent.wait_for_log("Processes of other users are hidden from this agent", LIMIT);
    let log = agent.log();
    assert!(log.contains("hidepid") && log.contains("ProtectProc=invisible"), "{log}");
    assert!(log.contains("uid=65534"), "{log}");
    // Once, not every sample.
    let seq = fleet.host("hidepid").unwrap()["latest"]["seq"].as_u64().unwrap();
    fleet.wait_host("hidepid", "two more samples", LIMIT, |h| {
        h["latest"]["seq"].as_u64() >= Some(seq + 2)
    });
    assert_eq!(agent.log().matches("Processes of other users are hidden").count(), 1);
}

/// As `nobody` on a normal procfs (what the shipped unit now gives the
/// agent), root's process is counted, with its CPU and memory; its open
/// files and I/O need capabilities the agent lacks, so they are unknown
/// (absent from /metrics) and the agent says once which.
#[test]
fn other_users_processes_are_counted_without_hidepid() {
    let (fleet, keys, config) = fleet_for_nobody("visible", 4343);
    let _sleeper = Killed(sleeper(4343));
    let _collector = fleet.start_collector(&[], "collector.log");
    let extra = ["--config", config.to_str().unwrap()];
    let agent = agent_in_namespace(&fleet, "visible", &keys, &extra, "true", Some(65534));
    let procs = wait_for("the group's process count", LIMIT, || {
        group_value(&fleet, "visible", "namedprocess_namegroup_num_procs")
    });
    assert_eq!(procs, 1.0, "root's sleep is seen by nobody");
    let rss = group_value(&fleet, "visible", "namedprocess_namegroup_memory_bytes").unwrap();
    assert!(rss > 0.0, "{rss}");
    assert_eq!(group_value(&fleet, "visible", "namedprocess_namegroup_open_filedesc"), None);
    agent.wait_for_log("Open files and I/O of processes of other users cannot be read", LIMIT);
    let log = agent.log();
    assert!(log.contains("CAP_DAC_READ_SEARCH") && log.contains("CAP_SYS_PTRACE"), "{log}");
    assert!(!log.contains("are hidden from this agent"), "{log}");
}
