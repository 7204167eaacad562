//! Agent failover between two collectors that share a key pair and an
//! allowlist, both writing to one Prometheus: the first is killed, the
//! agent moves to the second within its stale window, and the host's series
//! in Prometheus go on without a missing sample; SIGHUP brings the agent
//! back to the first.

mod common;

use std::time::Duration;

use common::{Fleet, servers::Prometheus};

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn remote_write_config(fleet: &Fleet, url: &str) -> String {
    let path = fleet.path("collector.toml");
    std::fs::write(&path, format!("[[remote_write]]\nurl = \"{url}\"\n")).unwrap();
    path.to_str().unwrap().to_string()
}

/// The times Prometheus holds of a series that every sample has.
fn times(prometheus: &Prometheus, host: &str) -> Vec<u64> {
    let selector = format!("node_memory_MemTotal_bytes{{host=\"{host}\"}}");
    let mut t: Vec<u64> =
        prometheus.raw(&selector, "10m").into_iter().flat_map(|(_, p)| p).map(|(t, _)| t).collect();
    t.sort_unstable();
    t.dedup();
    t
}

#[test]
fn the_agent_moves_to_the_second_collector_and_back_without_losing_a_sample() {
    let prometheus = Prometheus::start();
    let first = Fleet::new();
    let second = Fleet::new();
    let keys = first.agent_keys("fo", true);
    second.share_keys_from(&first);
    let collector_args = |fleet: &Fleet| {
        vec![
            "--ping-interval".to_string(),
            "1s".into(),
            "--config".into(),
            remote_write_config(fleet, &prometheus.write_url()),
        ]
    };
    let args_a = collector_args(&first);
    let args_b = collector_args(&second);
    fn as_str(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let mut a = first.start_collector(&as_str(&args_a), "collector.log");
    let _b = second.start_collector(&as_str(&args_b), "collector.log");
    let stale = Duration::from_secs(3);
    let agent = first.start_agent_to(
        "fo",
        &keys,
        &["--interval", "1s", "--stale-after", "3s"],
        &[first.endpoint(), second.endpoint()],
    );
    first.wait_host("fo", "up with samples", Duration::from_secs(30), |h| {
        h["state"] == "up" && h["latest"]["seq"].as_u64() >= Some(5)
    });
    let from = now_ms();

    a.kill();
    // Within the stale window (and a handshake): the kill resets the
    // connection, so the agent need not even wait for it.
    second.wait_host("fo", "up on the second collector", stale + Duration::from_secs(2), |h| {
        h["state"] == "up"
    });
    let seq_on_b = |h: &serde_json::Value| h["latest"]["seq"].as_u64().unwrap_or(0);
    let moved_at = seq_on_b(&second.wait_host(
        "fo",
        "a sample on the second collector",
        Duration::from_secs(10),
        |h| seq_on_b(h) > 0,
    ));
    second.wait_host("fo", "samples on the second collector", Duration::from_secs(30), |h| {
        seq_on_b(h) >= moved_at + 5
    });
    // The first comes back and forwards what it stored but had not sent;
    // the agent stays where it is.
    a = first.start_collector(&as_str(&args_a), "collector-2.log");
    let to = now_ms() - 2_000;
    let mut seen = Vec::new();
    let whole = common::poll(Duration::from_secs(60), || {
        seen = times(&prometheus, "fo").into_iter().filter(|t| (from..=to).contains(t)).collect();
        let first_gap = seen.windows(2).find(|w| w[1] - w[0] > 1_500);
        let covers = seen.first().is_some_and(|t| *t <= from + 1_500)
            && seen.last().is_some_and(|t| *t + 1_500 >= to);
        (first_gap.is_none() && covers).then_some(())
    });
    assert!(whole.is_some(), "Prometheus has a gap in {from}..{to}: {seen:?}");

    // SIGHUP: back to the first; the second shows why the host left.
    agent.signal(rustix::process::Signal::HUP);
    first.wait_host("fo", "up on the first collector again", Duration::from_secs(15), |h| {
        h["state"] == "up"
    });
    second.wait_host("fo", "down on the second, with the reason", Duration::from_secs(15), |h| {
        h["state"] == "down"
            && h["state_reason"].as_str().is_some_and(|r| r.contains("moved to another collector"))
    });
    drop(a);
}
