//! No sample lost, tested with real faults: real agents and a real
//! collector, killed with SIGKILL, paused with SIGSTOP, cut off by a silent
//! network partition (the agent in its own network namespace, the far end
//! of its link taken down, so the TCP connection hangs as on a real
//! network), a spool too small for the outage, full disks (small tmpfs
//! mounts) and a damaged store file. What was stored is read back through
//! `/api/hosts/{id}/samples` and checked against what the agents took:
//! their sequence numbers run without a hole from the first sample, and
//! every hole is a gap the agent reported. These tests need root, as CI has.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::{Fleet, Proc, agent_bin, collector_bin, http_get, parse_exposition, wait_for};
use rustix::process::Signal;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stored sample: (epoch, seq, taken at ms).
type Sample = (u64, u64, u64);

/// Every sample of host `id` in the store, in the order the API gives
/// (time order).
fn stored(fleet: &Fleet, id: &str) -> Vec<Sample> {
    let v = fleet.json(&format!("/api/hosts/{id}/samples?since=0")).unwrap_or(Value::Null);
    let col = |k: &str| -> Vec<u64> {
        v[k].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
    };
    let (e, s, t) = (col("epoch"), col("seq"), col("t"));
    e.into_iter().zip(s).zip(t).map(|((e, s), t)| (e, s, t)).collect()
}

/// The gaps the collector recorded for host `id`: (from_seq, to_seq,
/// samples not stored, reason).
fn gaps(fleet: &Fleet, id: &str) -> Vec<(u64, u64, u64, String)> {
    let v = fleet.json(&format!("/api/hosts/{id}/history?since=0&points=10")).unwrap_or_default();
    v["gaps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|g| {
            (
                g["from_seq"].as_u64().unwrap(),
                g["to_seq"].as_u64().unwrap(),
                g["samples"].as_u64().unwrap(),
                g["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The skipped sequence numbers of host `id` (an agent restarted without a
/// clean stop does not reuse the numbers it had reserved; nothing is lost).
fn skipped(fleet: &Fleet, id: &str) -> Vec<(u64, u64)> {
    gaps(fleet, id).into_iter().filter(|g| g.3 == "skipped").map(|g| (g.0, g.1)).collect()
}

/// Waits until the store holds host `name`'s samples from seq 1 up to
/// the newest it reported, each once, in order, with no hole but the
/// `allowed` ranges; returns them.
fn wait_complete(fleet: &Fleet, name: &str, limit: Duration, allowed: bool) -> Vec<Sample> {
    let deadline = Instant::now() + limit;
    loop {
        let host = fleet.host(name).unwrap_or_default();
        let id = host["id"].as_str().unwrap_or("").to_string();
        let latest = host["latest"]["seq"].as_u64().unwrap_or(0);
        let samples = stored(fleet, &id);
        let holes = if allowed { skipped(fleet, &id) } else { Vec::new() };
        let why = match check_complete(&samples, latest, &holes) {
            Ok(()) => return samples,
            Err(why) => why,
        };
        assert!(Instant::now() < deadline, "host {name}: the store is not complete: {why}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The check itself: one epoch; every seq of 1..=latest stored, but for
/// those in `holes` (reported lost: some may have been stored before the
/// agent dropped them); each once, in order, times rising.
fn check_complete(samples: &[Sample], latest: u64, holes: &[(u64, u64)]) -> Result<(), String> {
    if latest == 0 || samples.is_empty() {
        return Err("no samples yet".into());
    }
    let epochs: std::collections::BTreeSet<u64> = samples.iter().map(|s| s.0).collect();
    if epochs.len() != 1 {
        return Err(format!("several epochs: {epochs:?}"));
    }
    for (i, w) in samples.windows(2).enumerate() {
        if w[0].1 >= w[1].1 {
            return Err(format!("at {i}: seq {} after {} (twice or out of order)", w[1].1, w[0].1));
        }
        if w[0].2 >= w[1].2 {
            return Err(format!("times not rising at seq {}", w[1].1));
        }
    }
    let in_hole = |seq: u64| holes.iter().any(|(a, b)| (*a..=*b).contains(&seq));
    let stored: std::collections::HashSet<u64> = samples.iter().map(|s| s.1).collect();
    match (1..=latest).find(|s| !stored.contains(s) && !in_hole(*s)) {
        Some(missing) => Err(format!("seq {missing} (of {latest}) not stored")),
        None => Ok(()),
    }
}

/// The longest time between two samples taken, outside of `except`
/// (a time range when the agent was not running).
fn longest_pause(samples: &[Sample], except: Option<(u64, u64)>) -> u64 {
    samples
        .windows(2)
        .filter(|w| except.is_none_or(|(a, b)| !(w[0].2 <= b && w[1].2 >= a)))
        .map(|w| w[1].2 - w[0].2)
        .max()
        .unwrap_or(0)
}

/// A network namespace with a veth pair to this one; deleted on drop.
struct Netns {
    name: String,
    /// The device inside the namespace: the far end, seen from the
    /// collector.
    far: String,
    /// The collector's address on the link.
    near_ip: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let id = std::process::id() % 200 + 20;
        let name = format!("cmon-{tag}-{}", std::process::id());
        let (near, far) = (format!("cmn{id}{tag}"), format!("cmf{id}{tag}"));
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        sh(&format!("ip netns add {name}"));
        let ns = Netns { name: name.clone(), far: far.clone(), near_ip: format!("10.77.{id}.1") };
        sh(&format!("ip link add {near} type veth peer name {far} netns {name}"));
        sh(&format!("ip addr add 10.77.{id}.1/30 dev {near} && ip link set {near} up"));
        sh(&format!(
            "ip -n {name} addr add 10.77.{id}.2/30 dev {far} && ip -n {name} link set {far} up && ip -n {name} link set lo up"
        ));
        ns
    }

    fn link(&self, up: bool) {
        sh(&format!(
            "ip -n {} link set {} {}",
            self.name,
            self.far,
            if up { "up" } else { "down" }
        ));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Starts a collector listening on every address (the namespaced agent
/// reaches it over the veth link), its store in `data/`.
fn start_collector(fleet: &Fleet, log: &str, extra: &[&str]) -> Proc {
    let keys = fleet.collector_keys();
    let listen = format!("tcp://0.0.0.0:{}", fleet.zmq_port);
    let http = format!("127.0.0.1:{}", fleet.http_port);
    let data = fleet.path("data");
    let mut args = vec![
        "--keys",
        keys.to_str().unwrap(),
        "--listen",
        &listen,
        "--http",
        &http,
        "--data-dir",
        data.to_str().unwrap(),
        "--ping-interval",
        "1s",
    ];
    args.extend_from_slice(extra);
    let proc = Proc::spawn(&collector_bin(), &args, fleet.path(log), "collector");
    wait_for("the collector's HTTP port", LIMIT, || {
        http_get(fleet.http_port, "/healthz").filter(|(status, _)| *status == 200)
    });
    proc
}

fn metric(fleet: &Fleet, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let (_, text) = http_get(fleet.http_port, "/metrics")?;
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    parse_exposition(&text).get(&(name.to_string(), labels)).copied()
}

#[test]
fn every_sample_taken_is_stored_once_in_order_through_crashes_and_a_partition() {
    let fleet = Fleet::new();
    let ns = Netns::new("a");
    let keys: Vec<PathBuf> =
        ["cut", "killed", "steady"].iter().map(|n| fleet.agent_keys(n, true)).collect();
    let mut collector = start_collector(&fleet, "collector-1.log", &[]);
    let agent_args = ["--interval", "1s", "--stale-after", "4s"];
    // The agent behind the partition runs in the namespace.
    let spool_cut = fleet.path("spool-cut");
    let endpoint = format!("tcp://{}:{}", ns.near_ip, fleet.zmq_port);
    let mut args = vec!["netns", "exec", &ns.name];
    let agent = agent_bin();
    args.push(agent.to_str().unwrap());
    args.extend([
        "--keys",
        keys[0].to_str().unwrap(),
        "--name",
        "cut",
        "--spool-dir",
        spool_cut.to_str().unwrap(),
    ]);
    args.extend(agent_args);
    args.push(&endpoint);
    let _cut = Proc::spawn(Path::new("ip"), &args, fleet.path("agent-cut.log"), "agent cut");
    let mut killed = fleet.start_agent("killed", &keys[1], &agent_args);
    let _steady = fleet.start_agent("steady", &keys[2], &agent_args);
    for name in ["cut", "killed", "steady"] {
        fleet.wait_host(name, "up", LIMIT, |h| h["latest"]["seq"].as_u64() >= Some(3));
    }

    // The partition: 60 s, during which the collector is killed and
    // restarted twice, and one agent is killed and restarted while the
    // collector is down (what it took meanwhile is only in its disk spool).
    let started = Instant::now();
    ns.link(false);
    let at = |secs: u64| {
        let due = started + Duration::from_secs(secs);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    };
    at(6);
    collector.kill();
    at(9);
    collector = start_collector(&fleet, "collector-2.log", &[]);
    at(20);
    collector.kill();
    at(23);
    killed.kill();
    let agent_down = (now_ms(), 0);
    at(26);
    killed = fleet.start_agent("killed", &keys[1], &agent_args);
    let agent_down = (agent_down.0, now_ms());
    at(29);
    let _collector = start_collector(&fleet, "collector-3.log", &[]);
    at(60);
    ns.link(true);

    // Then everything every agent took is stored, once, in order.
    let limit = Duration::from_secs(90);
    let cut = wait_complete(&fleet, "cut", limit, false);
    let steady = wait_complete(&fleet, "steady", limit, false);
    let k = wait_complete(&fleet, "killed", limit, true);
    // Sampling never stopped: no pause in any agent's samples but while
    // one was not running.
    for (name, samples) in [("cut", &cut), ("steady", &steady)] {
        assert!(longest_pause(samples, None) < 1_800, "{name}: {}", longest_pause(samples, None));
        assert!(samples.len() >= 60, "{name}: {}", samples.len());
    }
    assert!(longest_pause(&k, Some(agent_down)) < 1_800);
    // The killed agent went on from its spool: its numbers continue past
    // the ones it had reserved, and it lost nothing.
    let id = fleet.host("killed").unwrap()["id"].as_str().unwrap().to_string();
    let g = gaps(&fleet, &id);
    assert!(g.iter().all(|g| g.3 == "skipped" && g.2 == 0), "{g:?}");
    // A fresh sample arrives within seconds.
    for name in ["cut", "killed", "steady"] {
        let h = fleet.wait_host(name, "fresh", LIMIT, |h| {
            let taken =
                h["latest"]["taken_at"].as_str().and_then(|t| humantime::parse_rfc3339(t).ok());
            let t = taken.map_or(0, |t| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64);
            h["state"] == "up" && t + 5_000 >= now_ms()
        });
        assert_eq!(h["state"], "up");
    }
    let stats = fleet.stats();
    assert_eq!(stats["store"]["lost"]["spool_full"], 0, "{stats}");
    drop(killed);
}

#[test]
fn an_outage_longer_than_the_spool_drops_the_oldest_and_says_so() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("small", true);
    let mut collector = start_collector(&fleet, "collector-1.log", &[]);
    let _agent = fleet.start_agent(
        "small",
        &keys,
        &["--interval", "100ms", "--spool-size", "1MiB", "--stale-after", "3s"],
    );
    let host = fleet.wait_host("small", "up", LIMIT, |h| h["latest"]["seq"].as_u64() >= Some(5));
    let id = host["id"].as_str().unwrap().to_string();
    // Connected, the smallest spool holds what waits for acknowledgement
    // (live samples are acknowledged every 5 s) without dropping any of it.
    fleet.wait_host("small", "up", LIMIT, |h| h["latest"]["seq"].as_u64() >= Some(80));
    let dropped = metric(&fleet, "curvemon_agent_dropped_samples_total", &[("host", "small")]);
    assert_eq!(dropped, Some(0.0), "a 1 MiB spool dropped samples on a healthy link");
    // The collector goes away until the agent's 1 MiB spool has
    // overflowed (about 45 s at 100 ms; it logs each drop).
    collector.kill();
    wait_for("the spool to fill and drop", Duration::from_secs(150), || {
        (spool_drops(&fleet.path("agent-small.log")).len() >= 12).then_some(())
    });
    let _collector = start_collector(&fleet, "collector-2.log", &[]);

    // Everything but the dropped ranges is stored, and what the store lacks
    // is exactly what the agent said it let go. While the full spool
    // drains after the reconnect, a new sample can still push out the
    // oldest it holds, sent but not yet acknowledged (the collector has
    // it: no loss, no gap recorded, but the agent counts it). So this
    // waits for the drain to end: one sample taken after the outage whose
    // spool holds a few samples again, far from full, and whose dropped
    // counter agrees with the agent's log of every drop.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (samples, g, agent_dropped, let_go) = loop {
        let let_go = spool_drops(&fleet.path("agent-small.log"));
        let latest = fleet.host("small").unwrap_or_default()["latest"]["seq"].as_u64().unwrap_or(0);
        let g = gaps(&fleet, &id);
        let holes: Vec<(u64, u64)> = g.iter().map(|g| (g.0, g.1)).collect();
        let samples = stored(&fleet, &id);
        let complete = check_complete(&samples, latest, &holes);
        let exposition = http_get(fleet.http_port, "/metrics")
            .map(|(_, text)| parse_exposition(&text))
            .unwrap_or_default();
        let of_host = |name: &str| {
            exposition.get(&(name.to_string(), [("host".into(), "small".into())].into())).copied()
        };
        let held = of_host("curvemon_agent_spool_samples");
        let agent_dropped = of_host("curvemon_agent_dropped_samples_total");
        let drained = held.is_some_and(|held| held <= 3.0)
            && agent_dropped.is_some_and(|n| n > 0.0 && n as usize == let_go.len());
        if complete.is_ok() && !g.is_empty() && drained {
            break (samples, g, agent_dropped.unwrap() as usize, let_go);
        }
        assert!(
            Instant::now() < deadline,
            "not complete: {complete:?}, gaps {g:?}, spool holds {held:?}, \
             agent dropped {agent_dropped:?} (its log: {})",
            let_go.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(g.iter().all(|g| g.3 == "spool_full"), "{g:?}");
    let seqs: std::collections::BTreeSet<u64> = samples.iter().map(|s| s.1).collect();
    let in_gaps: std::collections::BTreeSet<u64> = g.iter().flat_map(|g| g.0..=g.1).collect();
    let missing: Vec<u64> = in_gaps.iter().copied().filter(|s| !seqs.contains(s)).collect();
    // Counted on the agent: its counter is its log of drops, and it
    // overflowed as long as it was cut off.
    assert_eq!(agent_dropped, let_go.len());
    assert!(let_go.len() >= 12, "{let_go:?}");
    // Nothing lost silently: every sample the agent let go is either a
    // gap it reported or one the collector had already stored; and what
    // the collector records as a gap is what the agent said.
    for seq in &let_go {
        assert!(in_gaps.contains(seq) || seqs.contains(seq), "seq {seq} let go, not reported");
    }
    let reported: std::collections::BTreeSet<u64> = let_go.iter().copied().collect();
    let before: u64 = *let_go.iter().min().unwrap();
    assert!(
        in_gaps.iter().all(|s| reported.contains(s) || *s < before),
        "gaps {g:?} beyond the agent's drops {let_go:?}"
    );
    // The oldest went: all that is missing comes before all that was kept
    // of the outage, in one run.
    let (first_missing, last_missing) =
        (*missing.iter().min().unwrap(), *missing.iter().max().unwrap());
    assert_eq!(last_missing - first_missing + 1, missing.len() as u64, "one run: {g:?}");
    assert!(seqs.contains(&(last_missing + 1)), "the next one after the drop is kept");
    // Counted on the collector: samples lost are only those it did not
    // already have, and no gap came after the drain.
    assert_eq!(gaps(&fleet, &id), g, "no drop after the spool drained");
    let lost = metric(&fleet, "curvemon_collector_samples_lost_total", &[("reason", "spool_full")]);
    assert_eq!(lost, Some(missing.len() as f64));
    assert_eq!(g.iter().map(|g| g.2).sum::<u64>(), missing.len() as u64);
}

/// Every sequence number the agent's log says its full spool let go.
fn spool_drops(log: &Path) -> Vec<u64> {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let field = |line: &str, key: &str| -> Option<u64> {
        let at = line.find(key)? + key.len();
        line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    log.lines()
        .filter(|line| line.contains("The spool is full"))
        .filter_map(|line| Some(field(line, " from_seq=")?..=field(line, " to_seq=")?))
        .flatten()
        .collect()
}

#[test]
fn a_paused_collector_blames_no_host() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("paused", true);
    let collector = start_collector(&fleet, "collector.log", &["--down-after", "4s"]);
    let _agent = fleet.start_agent("paused", &keys, &["--interval", "250ms"]);
    fleet.wait_host("paused", "up", LIMIT, |h| h["latest"]["seq"].as_u64() >= Some(3));
    // A stalled VM: the collector does not run for 20 s, then goes on.
    collector.signal(Signal::STOP);
    std::thread::sleep(Duration::from_secs(20));
    collector.signal(Signal::CONT);
    let seq = fleet.wait_host("paused", "a new sample", LIMIT, |_| true)["latest"]["seq"]
        .as_u64()
        .unwrap();
    fleet.wait_host("paused", "newer samples", LIMIT, |h| {
        h["latest"]["seq"].as_u64() > Some(seq + 8)
    });
    let id = fleet.host("paused").unwrap()["id"].as_str().unwrap().to_string();
    let host = fleet.json(&format!("/api/hosts/{id}")).unwrap();
    let states: Vec<&str> =
        host["transitions"].as_array().unwrap().iter().filter_map(|t| t["to"].as_str()).collect();
    assert!(states.iter().all(|s| *s == "up"), "the host left up: {host}");
    assert_eq!(host["state"], "up");
    // And what the agent took meanwhile is all stored.
    wait_complete(&fleet, "paused", LIMIT, false);
}

/// A small tmpfs at `dir`; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(dir: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        sh(&format!("mount -t tmpfs -o size={size} curvemon-test {}", dir.display()));
        Tmpfs(dir)
    }

    /// Fills it to the last byte (`filler`), returning the file.
    fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let _ = Command::new("dd")
            .args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=4k"])
            .output();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disks_are_errors_and_counters_and_nothing_is_lost_when_space_returns() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("tight", true);
    let data = Tmpfs::new(fleet.path("data"), "4m");
    let spool = Tmpfs::new(fleet.path("spool"), "1m");
    let _collector = start_collector(&fleet, "collector.log", &[]);
    let spool_dir = spool.0.join("agent");
    let _agent = fleet.start_agent(
        "tight",
        &keys,
        &["--interval", "200ms", "--spool-dir", spool_dir.to_str().unwrap()],
    );
    fleet.wait_host("tight", "up", LIMIT, |h| h["latest"]["seq"].as_u64() >= Some(3));

    // The collector's disk fills: it says so, counts, acknowledges nothing
    // more, and keeps running; the agent holds on to its samples.
    let filler = data.fill();
    wait_for("store errors counted", LIMIT, || {
        metric(&fleet, "curvemon_collector_store_errors_total", &[]).filter(|n| *n > 0.0)
    });
    let log = std::fs::read_to_string(fleet.path("collector.log")).unwrap();
    assert!(log.contains("Cannot write to the history store"), "{log}");
    // The agent's disk fills too: it falls back to memory and counts.
    let spool_filler = spool.fill();
    wait_for("spool errors counted", LIMIT, || {
        metric(&fleet, "curvemon_agent_spool_errors_total", &[("host", "tight")])
            .filter(|n| *n > 0.0)
    });
    std::thread::sleep(Duration::from_secs(2));
    // Space returns: everything taken meanwhile is stored.
    std::fs::remove_file(filler).unwrap();
    std::fs::remove_file(spool_filler).unwrap();
    let samples = wait_complete(&fleet, "tight", Duration::from_secs(60), false);
    assert!(samples.len() > 20);
    let agent_log = std::fs::read_to_string(fleet.path("agent-tight.log")).unwrap();
    assert!(
        agent_log.contains("No space left on device") || agent_log.contains("os error 28"),
        "{agent_log}"
    );
}

/// How a run in the store holds `v` as the first sample's value (coded
/// against nothing): a control byte (its leading and trailing zero bytes)
/// and the bytes between, little-endian.
fn run_value_bytes(v: f64) -> Vec<u8> {
    let x = v.to_bits();
    let (lead, trail) = (x.leading_zeros() / 8, x.trailing_zeros() / 8);
    let mut out = vec![((lead << 4) | trail) as u8];
    out.extend_from_slice(&x.to_le_bytes()[trail as usize..(8 - lead) as usize]);
    out
}

#[test]
fn a_damaged_store_is_reported_and_the_rest_is_kept() {
    let fleet = Fleet::new();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/fixtures");
    let fixture = |name: &str| fixtures.join(name).display().to_string();
    let keys_f = fleet.agent_keys("fixture", true);
    let keys_r = fleet.agent_keys("real", true);
    let mut collector = start_collector(&fleet, "collector-1.log", &[]);
    let (proc, sys) = (fixture("proc"), fixture("sys-unified"));
    let mut fixture_agent = fleet.start_agent(
        "fixture",
        &keys_f,
        &[
            "--interval",
            "200ms",
            "--proc-root",
            &proc,
            "--sys-root",
            &sys,
            "--collectors",
            "memory",
        ],
    );
    let mut real = fleet.start_agent("real", &keys_r, &["--interval", "200ms"]);
    let h =
        fleet.wait_host("fixture", "samples", LIMIT, |h| h["latest"]["seq"].as_u64() >= Some(10));
    fleet.wait_host("real", "samples", LIMIT, |h| h["latest"]["seq"].as_u64() >= Some(10));
    // The fixture's MemFree (no live host has just that many bytes free).
    let mem_free = 22_553_064.0 * 1024.0;
    let fid = h["id"].as_str().unwrap().to_string();
    let rid = fleet.host("real").unwrap()["id"].as_str().unwrap().to_string();
    wait_complete(&fleet, "fixture", LIMIT, false);
    wait_complete(&fleet, "real", LIMIT, false);
    fixture_agent.kill();
    real.kill();
    let real_before = stored(&fleet, &rid).len();
    collector.signal(Signal::TERM);
    collector.wait_exit(LIMIT);

    // Damage every stored copy of the fixture host's free memory (the
    // collector wrote its runs when it stopped).
    let file = fleet.path("data").join("store.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    let needle = run_value_bytes(mem_free);
    let mut hits = 0;
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        if bytes[i..i + needle.len()] == needle[..] {
            bytes[i + needle.len() - 1] ^= 0x40;
            hits += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    // Once per run (the value does not change, so later samples of a run
    // only mark it unchanged).
    assert!(hits >= 1, "{hits}");
    std::fs::write(&file, &bytes).unwrap();

    let _collector = start_collector(&fleet, "collector-2.log", &[]);
    let read = fleet.json(&format!("/api/hosts/{fid}/samples?since=0")).unwrap();
    assert!(read["damaged"].as_u64() > Some(0), "{read}");
    assert_eq!(stored(&fleet, &rid).len(), real_before, "the other host's history is kept");
    let log = std::fs::read_to_string(fleet.path("collector-2.log")).unwrap();
    assert!(log.contains("Skipped damaged history in the store"), "{log}");

    // A file that is not a store at all is moved aside; the collector
    // starts on a new one and says where the old one is.
    drop(_collector);
    std::fs::write(&file, vec![0x5a; 64 * 1024]).unwrap();
    let _collector = start_collector(&fleet, "collector-3.log", &[]);
    let log = std::fs::read_to_string(fleet.path("collector-3.log")).unwrap();
    assert!(log.contains("moved aside"), "{log}");
    let aside = std::fs::read_dir(fleet.path("data"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains("damaged"));
    assert!(aside);
}
