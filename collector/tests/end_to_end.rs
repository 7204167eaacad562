//! The foundation, end to end: real collector and agent processes over
//! loopback TCP with real CURVE keys made by the binaries' `keygen`, reading
//! the real /proc of this machine.

mod common;

use std::time::{Duration, Instant};

use common::{Fleet, agent_bin, collector_bin, run, wait_for};
use curvemon_keys::cert;
use curvemon_protocol::{Hello, Message, PROTOCOL_VERSION, RejectReason, codec};
use rustix::process::Signal;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(20);

fn seq(host: &Value) -> u64 {
    host["latest"]["seq"].as_u64().unwrap_or(0)
}

#[test]
fn handshake_model_and_metrics_flow() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("web-01", true);
    let _collector = fleet.start_collector(&[], "collector.log");
    let _agent = fleet.start_agent("web-01", &keys, &["--interval", "300ms"]);

    let host = fleet.wait_host("web-01", "up with model and CPU percent", LIMIT, |h| {
        h["state"] == "up" && h["model"].is_object() && h["latest"]["cpu_percent"].is_number()
    });
    let model = &host["model"];
    assert_eq!(
        model["mem_total_bytes"].as_u64(),
        Some(common::mem_total_bytes()),
        "MemTotal from /proc/meminfo"
    );
    assert_eq!(model["cpu_count"].as_u64(), Some(common::cpu_count()));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(model["kernel"].as_str(), Some(kernel.trim()));
    assert!(!model["os"].as_str().unwrap().is_empty());
    assert!(model["boot_time"].as_str().unwrap().ends_with('Z'));
    let latest = &host["latest"];
    assert!(latest["mem_available_bytes"].as_f64().unwrap() > 0.0);
    assert!(latest["uptime_seconds"].as_f64().unwrap() > 0.0);
    assert!(latest["load1"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        latest["cpu_percent_per_core"].as_array().unwrap().len() as u64,
        common::cpu_count()
    );

    // Metrics keep flowing, one sequence number per message, none missed.
    let first = seq(&host);
    let later = fleet.wait_host("web-01", "five more samples", LIMIT, |h| seq(h) >= first + 5);
    assert_eq!(later["missed_samples"], 0);

    // The id is URL-safe and stable; /api/hosts/{id} serves the same host.
    let id = host["id"].as_str().unwrap();
    assert!(id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    let one = fleet.json(&format!("/api/hosts/{id}")).unwrap();
    assert_eq!(one["hostname"], "web-01");
    assert_eq!(common::http_get(fleet.http_port, "/api/hosts/nope").unwrap().0, 404);
    let (status, page) = common::http_get(fleet.http_port, "/").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("/assets/app.js") && page.contains("/assets/uplot.js"), "{page}");
    let (status, script) = common::http_get(fleet.http_port, "/assets/app.js").unwrap();
    assert_eq!(status, 200);
    assert!(script.contains("/api/stream") && script.contains("/api/hosts"));
    assert_eq!(common::http_get(fleet.http_port, "/assets/nothing.js").unwrap().0, 404);
    let head = common::http_head(fleet.http_port, "/");
    assert!(head.contains("content-security-policy: default-src 'self'"), "{head}");
}

#[test]
fn collector_restart_brings_the_host_back_up() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("db-01", true);
    let mut collector = fleet.start_collector(&[], "collector-1.log");
    // A long stale window: recovery must not wait for the agent to give up
    // on its socket.
    let _agent = fleet.start_agent("db-01", &keys, &["--interval", "1s", "--stale-after", "60s"]);
    let before = fleet.wait_host("db-01", "up with a model", LIMIT, |h| {
        h["state"] == "up" && h["model"].is_object()
    });

    collector.signal(Signal::KILL);
    collector.wait_exit(LIMIT);
    let killed = Instant::now();
    let _collector = fleet.start_collector(&[], "collector-2.log");
    let after = fleet.wait_host("db-01", "up again after the restart", LIMIT, |h| {
        h["state"] == "up" && h["model"].is_object() && h["latest"].is_object()
    });
    let took = killed.elapsed();
    eprintln!("collector restart → host up with model and metrics: {} ms", took.as_millis());
    assert_eq!(after["id"], before["id"], "same host, same id");
    assert!(seq(&after) > seq(&before), "the agent kept its sequence");
}

#[test]
fn killed_agent_goes_stale_then_down() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("app-01", true);
    let _collector =
        fleet.start_collector(&["--stale-after", "1s", "--down-after", "3s"], "collector.log");
    let mut agent = fleet.start_agent("app-01", &keys, &["--interval", "250ms"]);
    fleet.wait_host("app-01", "up", LIMIT, |h| h["state"] == "up" && h["latest"].is_object());

    agent.signal(Signal::KILL);
    agent.wait_exit(LIMIT);
    let stale = fleet.wait_host("app-01", "stale", LIMIT, |h| h["state"] != "up");
    assert_eq!(stale["state"], "stale", "stale comes before down");
    assert!(stale["state_reason"].as_str().unwrap().starts_with("no message for"));
    let down = fleet.wait_host("app-01", "down", LIMIT, |h| h["state"] == "down");
    let states: Vec<&str> =
        down["transitions"].as_array().unwrap().iter().map(|t| t["to"].as_str().unwrap()).collect();
    assert_eq!(states, ["up", "stale", "down"]);
    for t in down["transitions"].as_array().unwrap() {
        assert!(t["at"].as_str().unwrap().ends_with('Z'), "time-stamped: {t}");
    }
}

#[test]
fn sigterm_agent_says_bye_and_is_down_at_once() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("cache-01", true);
    // Windows far longer than the test: only the bye can make it down.
    let _collector =
        fleet.start_collector(&["--stale-after", "5m", "--down-after", "10m"], "collector.log");
    let mut agent = fleet.start_agent("cache-01", &keys, &["--interval", "250ms"]);
    fleet.wait_host("cache-01", "up", LIMIT, |h| h["state"] == "up" && h["latest"].is_object());

    agent.signal(Signal::TERM);
    let status = agent.wait_exit(LIMIT);
    assert!(status.success(), "agent exits 0 on SIGTERM, got {status}");
    let down = fleet.wait_host("cache-01", "down", LIMIT, |h| h["state"] == "down");
    assert_eq!(down["state_reason"], "agent said bye: received SIGTERM");
}

#[test]
fn wrong_collector_key_is_logged_and_the_host_never_appears() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("lost-01", true);
    // Replace the collector's key in the agent's directory with another one.
    let other = fleet.path("other-collector");
    let (ok, _, _) = run(&collector_bin(), &["keygen", "--keys", other.to_str().unwrap()]);
    assert!(ok);
    std::fs::copy(other.join("collector.key"), keys.join("collector.key")).unwrap();
    let _collector = fleet.start_collector(&[], "collector.log");
    let agent = fleet.start_agent("lost-01", &keys, &["--interval", "250ms"]);

    agent.wait_for_log("CURVE handshake with", LIMIT);
    assert!(agent.log().contains("holds this collector's public key"), "{}", agent.log());
    wait_for("a counted handshake failure", LIMIT, || {
        (fleet.stats()["handshake_failures"].as_u64() >= Some(1)).then_some(())
    });
    assert!(fleet.hosts().is_empty(), "{:?}", fleet.hosts());
    assert_eq!(fleet.stats()["frames_received"], 0);
}

#[test]
fn agent_not_in_the_allowlist_is_refused() {
    let fleet = Fleet::new();
    let _known = fleet.agent_keys("known-01", true);
    let stranger = fleet.agent_keys("stranger-01", false);
    let collector = fleet.start_collector(&[], "collector.log");
    let agent = fleet.start_agent("stranger-01", &stranger, &["--interval", "250ms"]);

    agent.wait_for_log("refused this agent's key", LIMIT);
    let key = cert::read_public(&stranger.join("agent.key")).unwrap().public.to_z85();
    collector.wait_for_log("Refused an agent", LIMIT);
    assert!(
        collector.log().contains(&key),
        "the refusal names the key {key}:\n{}",
        collector.log()
    );
    assert!(fleet.stats()["agents_refused"].as_u64() >= Some(1));
    assert!(fleet.hosts().is_empty());
}

#[test]
fn garbage_from_an_authenticated_peer_is_counted_and_the_collector_keeps_serving() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("honest-01", true);
    let ctx = zmq::Context::new();
    let (raw, raw_pair) = common::raw_peer(&fleet, &ctx);
    let collector = fleet.start_collector(&[], "collector.log");
    let _agent = fleet.start_agent("honest-01", &keys, &["--interval", "250ms"]);
    fleet.wait_host("honest-01", "up", LIMIT, |h| h["state"] == "up" && h["latest"].is_object());

    raw.connect(&fleet.endpoint()).unwrap();
    raw.send(&b"\x00\xffnot a curvemon frame at all"[..], 0).unwrap();
    let mut truncated = codec::encode(&Message::ModelRequest);
    truncated.truncate(5);
    raw.send(truncated, 0).unwrap();
    wait_for("two counted decode errors", LIMIT, || {
        (fleet.stats()["decode_errors"].as_u64() >= Some(2)).then_some(())
    });
    collector.wait_for_log("Dropping a malformed frame", LIMIT);
    assert!(collector.log().contains(&raw_pair.public.to_z85()), "logged with the peer's key");

    // A well-formed frame of a future version gets a reject naming both versions.
    let hello = Message::Hello(Hello {
        agent_version: "9.9.9".into(),
        hostname: "future".into(),
        machine_id: String::new(),
        boot_id: String::new(),
        interval_ms: 1000,
    });
    raw.send(codec::encode_with_version(&hello, 99), 0).unwrap();
    let reply = wait_for("a reject", LIMIT, || raw.recv_bytes(0).ok());
    match codec::decode(&reply).unwrap() {
        Message::Reject(r) => {
            assert_eq!(
                r.reason,
                RejectReason::UnsupportedVersion { collector: PROTOCOL_VERSION, agent: 99 }
            );
            assert!(r.detail.contains("99") && r.detail.contains('1'));
        }
        other => panic!("expected a reject, got {other:?}"),
    }

    // The honest agent is unaffected.
    let now = seq(&fleet.host("honest-01").unwrap());
    fleet.wait_host("honest-01", "more samples after the garbage", LIMIT, |h| {
        seq(h) >= now + 3 && h["state"] == "up"
    });
    assert!(fleet.host("future").is_none());
}

#[test]
fn second_key_claiming_a_live_name_is_rejected() {
    let fleet = Fleet::new();
    // Keys allowed without pinned names, so both may claim any name.
    let first = fleet.agent_keys("twin-a", false);
    let second = fleet.agent_keys("twin-b", false);
    fleet.allow_unpinned(&first, "twin-a.key");
    fleet.allow_unpinned(&second, "twin-b.key");
    let _collector = fleet.start_collector(&[], "collector.log");
    let _a = fleet.start_agent("twin", &first, &["--interval", "250ms"]);
    let owner =
        fleet.wait_host("twin", "up", LIMIT, |h| h["state"] == "up" && h["latest"].is_object());
    let b = fleet.start_agent("twin", &second, &["--interval", "250ms"]);
    b.wait_for_log("The collector rejected this agent", LIMIT);
    assert!(b.log().contains("is in use by the agent with key"), "{}", b.log());
    let hosts = fleet.hosts();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0]["id"], owner["id"]);
    assert_eq!(hosts[0]["state"], "up");
}

#[test]
fn a_secret_key_readable_by_others_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("loose-01", true);
    let secret = keys.join("agent.key_secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut agent = fleet.start_agent("loose-01", &keys, &[]);
    assert!(!agent.wait_exit(LIMIT).success());
    let log = agent.log();
    assert!(log.contains(&secret.display().to_string()), "{log}");
    assert!(log.contains("mode 0644"), "{log}");
    assert!(log.contains(&format!("chmod 600 {}", secret.display())), "{log}");

    let collector_secret = fleet.collector_keys().join("collector.key_secret");
    std::fs::set_permissions(&collector_secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let keys_dir = fleet.collector_keys();
    let (ok, _, err) =
        run(&collector_bin(), &["--keys", keys_dir.to_str().unwrap(), "--http", "127.0.0.1:0"]);
    assert!(!ok);
    assert!(err.contains(&format!("chmod 600 {}", collector_secret.display())), "{err}");
}

#[test]
fn missing_keys_are_clear_errors_not_hangs() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("bare-01", true);
    std::fs::remove_file(keys.join("collector.key")).unwrap();
    let (ok, _, err) = run(&agent_bin(), &["--keys", keys.to_str().unwrap(), "127.0.0.1:1"]);
    assert!(!ok);
    assert!(err.contains("collector.key") && err.contains("--collector-key"), "{err}");

    let empty = fleet.path("empty");
    let (ok, _, err) = run(&agent_bin(), &["--keys", empty.to_str().unwrap(), "127.0.0.1:1"]);
    assert!(!ok);
    assert!(err.contains("agent keygen --keys"), "{err}");
}

#[test]
fn keygen_never_overwrites_without_force() {
    let fleet = Fleet::new();
    let keys = fleet.collector_keys();
    let before = std::fs::read_to_string(keys.join("collector.key")).unwrap();
    let (ok, _, err) = run(&collector_bin(), &["keygen", "--keys", keys.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("already exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(keys.join("collector.key")).unwrap(), before);
    let (ok, out, _) =
        run(&collector_bin(), &["keygen", "--keys", keys.to_str().unwrap(), "--force"]);
    assert!(ok);
    assert!(out.contains("public key:"));
    assert_ne!(std::fs::read_to_string(keys.join("collector.key")).unwrap(), before);
}

#[test]
fn agent_reconnects_when_a_frozen_collector_goes_silent() {
    // SIGSTOP keeps the TCP connection open but silent: only the agent's own
    // stale window can notice.
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("edge-01", true);
    let collector = fleet.start_collector(&["--ping-interval", "200ms"], "collector.log");
    let agent =
        fleet.start_agent("edge-01", &keys, &["--interval", "250ms", "--stale-after", "1s"]);
    fleet.wait_host("edge-01", "up", LIMIT, |h| h["state"] == "up" && h["latest"].is_object());

    collector.signal(Signal::STOP);
    agent.wait_for_log("nothing heard from the collector for 1s", LIMIT);
    agent.wait_for_log("Reconnecting to the collector.", LIMIT);
    collector.signal(Signal::CONT);

    let hellos = || collector.log().matches("Agent said hello.").count();
    wait_for("a hello on the new socket", LIMIT, || (hellos() >= 2).then_some(()));
    let now = seq(&fleet.host("edge-01").unwrap());
    fleet.wait_host("edge-01", "up and sampling again", LIMIT, |h| {
        h["state"] == "up" && seq(h) > now
    });
}

#[test]
fn allow_and_revoke_take_effect_on_a_running_collector() {
    let fleet = Fleet::new();
    let _known = fleet.agent_keys("known", true);
    let newcomer = fleet.agent_keys("newcomer", false);
    let keys_dir = fleet.collector_keys();
    // Pings well inside the agent's --stale-after: live samples are only
    // acknowledged every 5 s, so without them the agent would reconnect
    // every 2 s, and a revoke that fell between two connections would be
    // refused by ZAP instead of cutting off a live agent.
    let collector = fleet.start_collector(&["--ping-interval", "500ms"], "collector.log");
    let agent =
        fleet.start_agent("web-07", &newcomer, &["--interval", "250ms", "--stale-after", "2s"]);
    agent.wait_for_log("refused this agent's key", LIMIT);

    let key_file = newcomer.join("agent.key");
    let (ok, out, err) = run(
        &collector_bin(),
        &[
            "allow",
            key_file.to_str().unwrap(),
            "--keys",
            keys_dir.to_str().unwrap(),
            "--name",
            "web-07",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("as web-07"), "{out}");
    // No restart, no SIGHUP: the collector notices the directory changed.
    // The refused agent has been backing off meanwhile (up to 30 s between
    // attempts), so its next attempt may be that far away.
    let backoff = Duration::from_secs(45);
    fleet.wait_host("web-07", "admitted after `collector allow`", backoff, |h| {
        h["state"] == "up" && h["latest"].is_object()
    });

    let (ok, out, err) =
        run(&collector_bin(), &["revoke", "web-07", "--keys", keys_dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("revoked"), "{out}");
    let down =
        fleet.wait_host("web-07", "down after `collector revoke`", LIMIT, |h| h["state"] == "down");
    assert_eq!(down["state_reason"], "key revoked");
    collector.wait_for_log("Cut off an agent whose key was revoked.", LIMIT);
    agent.wait_for_log("this agent's key was removed from the collector's allowlist", LIMIT);
    assert!(!agent.log().contains("nothing heard from the collector"), "{}", agent.log());
    // It stays out: its next handshakes are refused by ZAP.
    collector.wait_for_log("Refused an agent", LIMIT);
    assert_eq!(fleet.host("web-07").unwrap()["state"], "down");

    let (ok, _, err) =
        run(&collector_bin(), &["revoke", "web-07", "--keys", keys_dir.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("the allowlist has: known"), "{err}");
}

#[test]
fn an_allowed_key_is_pinned_to_its_name() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("db-01", false);
    let (ok, _, err) = run(
        &collector_bin(),
        &[
            "allow",
            keys.join("agent.key").to_str().unwrap(),
            "--keys",
            fleet.collector_keys().to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let _collector = fleet.start_collector(&[], "collector.log");
    let impostor = fleet.start_agent("web-01", &keys, &["--interval", "250ms"]);
    impostor.wait_for_log("allowed only as \"db-01\"", LIMIT);
    assert!(fleet.host("web-01").is_none());
    let _honest = fleet.start_agent("db-01", &keys, &["--interval", "250ms"]);
    fleet.wait_host("db-01", "up under its pinned name", LIMIT, |h| h["state"] == "up");
}

#[test]
fn rotating_an_agent_key_keeps_the_host_name() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("rotated", false);
    let keys_dir = fleet.collector_keys();
    let allow = |force: bool| {
        let file = keys.join("agent.key");
        let mut args = vec![
            "allow",
            file.to_str().unwrap(),
            "--keys",
            keys_dir.to_str().unwrap(),
            "--name",
            "web-09",
        ];
        if force {
            args.push("--force");
        }
        let (ok, _, err) = run(&collector_bin(), &args);
        assert!(ok, "{err}");
    };
    allow(false);
    let collector = fleet.start_collector(&[], "collector.log");
    let mut old = fleet.start_agent("web-09", &keys, &["--interval", "250ms"]);
    let before = fleet.wait_host("web-09", "up with the old key", LIMIT, |h| h["state"] == "up");

    // 1. A new key pair on the agent host (the running agent keeps the old one).
    let (ok, _, err) = run(
        &agent_bin(),
        &["keygen", "--keys", keys.to_str().unwrap(), "--name", "web-09", "--force"],
    );
    assert!(ok, "{err}");
    // 2. The collector allows the new key under the same name: the old key
    //    is no longer listed, so its live session is cut.
    allow(true);
    collector.wait_for_log("Cut off an agent whose key was revoked.", LIMIT);
    // 3. The agent restarts with the new key and is the same host by name.
    old.kill();
    let _new = fleet.start_agent("web-09", &keys, &["--interval", "250ms"]);
    let after = fleet.wait_host("web-09", "up with the new key", LIMIT, |h| {
        h["state"] == "up" && h["id"] != before["id"]
    });
    assert_ne!(after["public_key"], before["public_key"]);
    assert_eq!(
        fleet.hosts().iter().filter(|h| h["hostname"] == "web-09").count(),
        1,
        "one host of that name"
    );
}

#[test]
fn rotating_the_collector_key_as_documented() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("steady", true);
    let keys_dir = fleet.collector_keys();
    let mut collector = fleet.start_collector(&[], "collector-old-key.log");
    let mut agent = fleet.start_agent("steady", &keys, &["--interval", "250ms"]);
    let before = fleet.wait_host("steady", "up", LIMIT, |h| h["state"] == "up");

    // 1. A new collector key pair; 2. the collector restarts with it.
    let (ok, _, err) =
        run(&collector_bin(), &["keygen", "--keys", keys_dir.to_str().unwrap(), "--force"]);
    assert!(ok, "{err}");
    collector.kill();
    let _collector = fleet.start_collector(&[], "collector-new-key.log");
    // Until the agent has the new public key, it says what is wrong.
    agent.wait_for_log("holds this collector's public key", LIMIT);
    assert!(fleet.host("steady").is_none(), "not admitted with the old collector key");

    // 3. The agent gets the new collector.key and restarts.
    std::fs::copy(keys_dir.join("collector.key"), keys.join("collector.key")).unwrap();
    agent.kill();
    let _agent = fleet.start_agent("steady", &keys, &["--interval", "250ms"]);
    let after = fleet
        .wait_host("steady", "up again", LIMIT, |h| h["state"] == "up" && h["latest"].is_object());
    assert_eq!(after["id"], before["id"], "the agent's own key, and so its id, did not change");
}
